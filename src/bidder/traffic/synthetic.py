"""Synthetic OpenRTB 2.6 traffic with realistic shapes and a hidden ground truth.

Used to train the default model, to drive load tests and to make test fixtures. Every draw
comes from a `random.Random` seeded by the caller, so a seed always yields the same traffic.

The ground truth is the probability that an impression is worth bidding on: a logistic
function of the hour in the user's time zone, the device, OS, ad size, a hidden quality of
each domain or app, the country and the floor. The model never sees it; it has to learn it
from the sampled labels, which is what makes the default model's scores mean something.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

# country: (weight, UTC offset in minutes, regions, cities, floor multiplier, quality)
COUNTRIES: dict[str, tuple[float, int, tuple[str, ...], tuple[str, ...], float, float]] = {
    "USA": (
        0.38,
        -300,
        ("CA", "NY", "TX", "FL", "IL", "WA"),
        ("Los Angeles", "New York", "Houston", "Miami", "Chicago", "Seattle"),
        1.6,
        0.4,
    ),
    "GBR": (0.09, 0, ("ENG", "SCT", "WLS"), ("London", "Manchester", "Edinburgh"), 1.3, 0.3),
    "DEU": (0.08, 60, ("BE", "BY", "HH"), ("Berlin", "Munich", "Hamburg"), 1.2, 0.25),
    "FRA": (0.06, 60, ("IDF", "ARA", "PAC"), ("Paris", "Lyon", "Marseille"), 1.1, 0.2),
    "CAN": (0.05, -300, ("ON", "QC", "BC"), ("Toronto", "Montreal", "Vancouver"), 1.3, 0.3),
    "BRA": (
        0.08,
        -180,
        ("SP", "RJ", "MG"),
        ("Sao Paulo", "Rio de Janeiro", "Belo Horizonte"),
        0.5,
        -0.2,
    ),
    "IND": (0.12, 330, ("MH", "DL", "KA"), ("Mumbai", "Delhi", "Bangalore"), 0.3, -0.5),
    "JPN": (0.07, 540, ("13", "27", "14"), ("Tokyo", "Osaka", "Yokohama"), 1.4, 0.1),
    "AUS": (0.04, 600, ("NSW", "VIC", "QLD"), ("Sydney", "Melbourne", "Brisbane"), 1.2, 0.2),
    "MEX": (
        0.03,
        -360,
        ("CMX", "JAL", "NLE"),
        ("Mexico City", "Guadalajara", "Monterrey"),
        0.5,
        -0.3,
    ),
}
# devicetype: (weight, operating systems with weights, makes, quality)
DEVICES: dict[int, tuple[float, tuple[tuple[str, float], ...], tuple[str, ...], float]] = {
    4: (0.48, (("iOS", 0.45), ("Android", 0.55)), ("Apple", "Samsung", "Google", "Xiaomi"), 0.2),
    5: (0.07, (("iOS", 0.5), ("Android", 0.5)), ("Apple", "Samsung", "Lenovo"), 0.35),
    2: (0.38, (("Windows", 0.7), ("macOS", 0.25), ("Linux", 0.05)), ("Dell", "HP", "Apple"), -0.1),
    3: (0.07, (("tvOS", 0.2), ("Android", 0.5), ("Roku", 0.3)), ("Roku", "Samsung", "LG"), 0.6),
}
# (w, h): (weight, floor base in CPM, quality)
BANNER_SIZES: dict[tuple[int, int], tuple[float, float, float]] = {
    (300, 250): (0.34, 0.45, 0.2),
    (728, 90): (0.16, 0.35, -0.2),
    (320, 50): (0.22, 0.15, -0.5),
    (160, 600): (0.06, 0.30, -0.1),
    (300, 600): (0.08, 0.60, 0.4),
    (970, 250): (0.05, 0.80, 0.3),
    (320, 480): (0.09, 0.90, 0.5),
}
TOPICS = ("news", "sport", "games", "recipes", "weather", "travel", "tech", "music")
VIDEO_SIZES = ((640, 360), (1280, 720), (1920, 1080))
SIMULATED_WEEK_START = 1_764_547_200.0  # 2025-12-01T00:00:00Z, a Monday
BASE_LOGIT = -3.2


@dataclass(frozen=True)
class Inventory:
    domain: str
    is_app: bool
    publisher_id: str
    quality: float
    categories: tuple[str, ...]


@dataclass(frozen=True)
class LabelledRequest:
    request: dict[str, Any]
    timestamp: float
    labels: list[int]
    probabilities: list[float]


class SyntheticTraffic:
    def __init__(self, seed: int, *, inventory_size: int = 400) -> None:
        self.random = random.Random(seed)
        self.inventory = [self._make_inventory(index) for index in range(inventory_size)]
        # Zipf-like popularity: a few domains carry most of the traffic.
        self._inventory_weights = [1.0 / (rank + 1) ** 1.1 for rank in range(inventory_size)]
        self._countries = list(COUNTRIES)
        self._country_weights = [COUNTRIES[c][0] for c in self._countries]
        self._device_types = list(DEVICES)
        self._device_weights = [DEVICES[d][0] for d in self._device_types]
        self._sizes = list(BANNER_SIZES)
        self._size_weights = [BANNER_SIZES[s][0] for s in self._sizes]

    def _make_inventory(self, index: int) -> Inventory:
        rng = self.random
        is_app = rng.random() < 0.4
        name = f"{rng.choice(TOPICS)}{index}"
        domain = f"com.{name}.app" if is_app else f"{name}.example"
        categories = (rng.choice(("IAB1", "IAB2", "IAB3", "IAB9", "IAB12", "IAB17", "IAB19")),)
        return Inventory(domain, is_app, f"pub-{index // 3}", rng.gauss(0.0, 0.8), categories)

    def samples(self, count: int) -> Iterator[LabelledRequest]:
        for _ in range(count):
            yield self._sample()

    def _sample(self) -> LabelledRequest:
        rng = self.random
        timestamp = SIMULATED_WEEK_START + rng.random() * 7 * 86_400
        inventory = rng.choices(self.inventory, self._inventory_weights)[0]
        country = rng.choices(self._countries, self._country_weights)[0]
        _, offset, regions, cities, floor_factor, country_quality = COUNTRIES[country]
        region_index = rng.randrange(len(regions))
        device_type = rng.choices(self._device_types, self._device_weights)[0]
        _, systems, makes, device_quality = DEVICES[device_type]
        os_name = rng.choices([s for s, _ in systems], [w for _, w in systems])[0]
        local = timestamp + offset * 60
        hour = int(local // 3600) % 24
        weekday = int(local // 86_400 + 0) % 7  # the simulated week starts on a Monday
        imps, imp_qualities = self._imps(rng, floor_factor, device_type)
        request: dict[str, Any] = {
            "id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "imp": imps,
            "device": {
                "ua": f"Mozilla/5.0 ({os_name}) Synthetic/{rng.randint(1, 120)}",
                "ip": f"198.51.100.{rng.randint(1, 254)}",
                "ifa": str(uuid.UUID(int=rng.getrandbits(128))),
                "devicetype": device_type,
                "os": os_name,
                "make": rng.choice(makes),
                "connectiontype": rng.choice((2, 2, 2, 6, 5)),
                "geo": {
                    "country": country,
                    "region": regions[region_index],
                    "city": cities[region_index],
                    "utcoffset": offset,
                    "type": 2,
                },
            },
            "user": {"id": uuid.UUID(int=rng.getrandbits(128)).hex},
            "at": rng.choice((1, 2)),
            "tmax": rng.choice((80, 100, 120, 150, 200, 300)),
            "cur": ["USD"],
            "source": {"tid": uuid.UUID(int=rng.getrandbits(128)).hex},
            "regs": {"ext": {"gdpr": 0}},
        }
        place: dict[str, Any] = {
            "id": inventory.publisher_id + "-" + inventory.domain,
            "cat": list(inventory.categories),
            "publisher": {"id": inventory.publisher_id},
        }
        if inventory.is_app:
            request["app"] = {**place, "bundle": inventory.domain}
        else:
            request["site"] = {
                **place,
                "domain": inventory.domain,
                "page": f"https://{inventory.domain}/article/{rng.randint(1, 10**6)}",
            }
        if rng.random() < 0.05:
            request["bcat"] = ["IAB25", "IAB26"]
        if rng.random() < 0.03:
            request["badv"] = ["competitor.example"]
        if rng.random() < 0.3:
            request["ext"] = {"exchange": {"segment": rng.randint(1, 50)}}
        context = (
            inventory.quality
            + country_quality
            + device_quality
            + _hour_effect(hour)
            + (0.25 if weekday >= 5 else 0.0)
            + (0.15 if os_name == "iOS" else 0.0)
        )
        probabilities = [
            _sigmoid(BASE_LOGIT + context + quality - 0.6 * math.log1p(imp["bidfloor"]))
            for imp, quality in zip(imps, imp_qualities, strict=True)
        ]
        labels = [1 if rng.random() < p else 0 for p in probabilities]
        return LabelledRequest(request, timestamp, labels, probabilities)

    def _imps(
        self, rng: random.Random, floor_factor: float, device_type: int
    ) -> tuple[list[dict[str, Any]], list[float]]:
        count = rng.choices((1, 2, 3, 4), (0.78, 0.14, 0.05, 0.03))[0]
        imps: list[dict[str, Any]] = []
        qualities: list[float] = []
        for index in range(count):
            kind = rng.random()
            if kind < 0.85:
                size = rng.choices(self._sizes, self._size_weights)[0]
                _, floor_base, quality = BANNER_SIZES[size]
                banner: dict[str, Any] = {"pos": rng.choice((0, 1, 3))}
                if rng.random() < 0.3:
                    others = rng.sample(self._sizes, 2)
                    banner["format"] = [{"w": w, "h": h} for w, h in (size, *others)]
                else:
                    banner["w"], banner["h"] = size
                imp: dict[str, Any] = {"id": str(index + 1), "banner": banner}
            elif kind < 0.95 or device_type == 3:
                w, h = rng.choice(VIDEO_SIZES)
                floor_base, quality = 2.5, 0.7
                imp = {
                    "id": str(index + 1),
                    "video": {
                        "mimes": ["video/mp4", "video/webm"],
                        "w": w,
                        "h": h,
                        "minduration": 5,
                        "maxduration": rng.choice((15, 30, 60)),
                        "protocols": [2, 3, 5, 6],
                        "plcmt": rng.choice((1, 2, 4)),
                    },
                }
            else:
                floor_base, quality = 0.5, 0.1
                native = {"ver": "1.2", "assets": [{"id": 1, "required": 1, "title": {"len": 90}}]}
                imp = {
                    "id": str(index + 1),
                    "native": {"request": orjson.dumps(native).decode(), "ver": "1.2"},
                }
            floor = round(floor_base * floor_factor * rng.lognormvariate(0.0, 0.5), 2)
            imp["bidfloor"] = floor
            imp["bidfloorcur"] = "USD"
            if rng.random() < 0.2:
                imp["instl"] = 1
                quality += 0.3
            imp["secure"] = 1
            imps.append(imp)
            qualities.append(quality)
        return imps, qualities


def generate_bid_requests(count: int, seed: int) -> list[dict[str, Any]]:
    """`count` realistic bid requests, the same ones for the same seed."""
    return [sample.request for sample in SyntheticTraffic(seed).samples(count)]


def _hour_effect(hour: int) -> float:
    # Evenings convert best, nights worst.
    return 0.5 * math.sin((hour - 14) / 24 * 2 * math.pi)


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))

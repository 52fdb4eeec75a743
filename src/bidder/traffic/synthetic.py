"""Synthetic OpenRTB 2.6 traffic with realistic shapes and a hidden ground truth.

Used to train the default model, to drive load tests and to make test fixtures. Every draw
comes from a `random.Random` seeded by the caller, so a seed always yields the same traffic.

The ground truth is the probability that an impression is worth bidding on: a logistic
function of the hour and day in the user's time zone (shaped differently on desktops, phones
and TVs), the device, OS, ad size and format, a hidden quality of each site or app, the
country, the connection and the floor. The model never sees it; it has to learn it from the
sampled labels, which is what makes the default model's scores mean something.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

T = TypeVar("T")

# 2025-12-01T00:00:00Z, a Monday. The UTC offsets below are the ones in force that week.
SIMULATED_WEEK_START = 1_764_547_200.0
WEEK_SECONDS = 7 * 86_400
BASE_LOGIT = -3.3
FLOOR_SLOPE = 0.6
USD_PER_EUR = 1.16
DEFAULT_WORLD_SEED = 2025


@dataclass(frozen=True, slots=True)
class City:
    region: str  # ISO 3166-2 subdivision code, without the country prefix
    name: str
    utcoffset: int  # minutes
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Country:
    code: str  # ISO 3166-1 alpha-3, as OpenRTB wants it
    weight: float  # share of the traffic
    cpm: float  # price level: floors scale with it
    effect: float  # ground-truth logit shift
    cities: tuple[City, ...]
    gdpr: bool = False
    euro: bool = False  # some sellers there quote floors in EUR


# December offsets: Sydney and Melbourne are on summer time, Brisbane and Perth never are.
_CITIES: dict[str, tuple[City, ...]] = {
    "USA": (
        City("NY", "New York", -300, 40.71, -74.01),
        City("FL", "Miami", -300, 25.76, -80.19),
        City("GA", "Atlanta", -300, 33.75, -84.39),
        City("TX", "Houston", -360, 29.76, -95.37),
        City("IL", "Chicago", -360, 41.88, -87.63),
        City("AZ", "Phoenix", -420, 33.45, -112.07),
        City("CA", "Los Angeles", -480, 34.05, -118.24),
        City("WA", "Seattle", -480, 47.61, -122.33),
    ),
    "GBR": (
        City("ENG", "London", 0, 51.51, -0.13),
        City("ENG", "Manchester", 0, 53.48, -2.24),
        City("SCT", "Edinburgh", 0, 55.95, -3.19),
        City("WLS", "Cardiff", 0, 51.48, -3.18),
    ),
    "DEU": (
        City("BE", "Berlin", 60, 52.52, 13.40),
        City("BY", "Munich", 60, 48.14, 11.58),
        City("HH", "Hamburg", 60, 53.55, 9.99),
        City("NW", "Cologne", 60, 50.94, 6.96),
    ),
    "FRA": (
        City("IDF", "Paris", 60, 48.86, 2.35),
        City("ARA", "Lyon", 60, 45.76, 4.84),
        City("PAC", "Marseille", 60, 43.30, 5.37),
        City("OCC", "Toulouse", 60, 43.60, 1.44),
    ),
    "CAN": (
        City("ON", "Toronto", -300, 43.65, -79.38),
        City("QC", "Montreal", -300, 45.50, -73.57),
        City("AB", "Calgary", -420, 51.05, -114.07),
        City("BC", "Vancouver", -480, 49.28, -123.12),
    ),
    "BRA": (
        City("SP", "Sao Paulo", -180, -23.55, -46.63),
        City("RJ", "Rio de Janeiro", -180, -22.91, -43.17),
        City("MG", "Belo Horizonte", -180, -19.92, -43.94),
        City("AM", "Manaus", -240, -3.12, -60.02),
    ),
    "IND": (
        City("MH", "Mumbai", 330, 19.08, 72.88),
        City("DL", "Delhi", 330, 28.70, 77.10),
        City("KA", "Bangalore", 330, 12.97, 77.59),
        City("TN", "Chennai", 330, 13.08, 80.27),
    ),
    "JPN": (
        City("13", "Tokyo", 540, 35.68, 139.69),
        City("27", "Osaka", 540, 34.69, 135.50),
        City("14", "Yokohama", 540, 35.44, 139.64),
        City("01", "Sapporo", 540, 43.06, 141.35),
    ),
    "AUS": (
        City("NSW", "Sydney", 660, -33.87, 151.21),
        City("VIC", "Melbourne", 660, -37.81, 144.96),
        City("QLD", "Brisbane", 600, -27.47, 153.03),
        City("WA", "Perth", 480, -31.95, 115.86),
    ),
    "MEX": (
        City("CMX", "Mexico City", -360, 19.43, -99.13),
        City("JAL", "Guadalajara", -360, 20.66, -103.35),
        City("NLE", "Monterrey", -360, 25.69, -100.32),
    ),
    "ESP": (
        City("MD", "Madrid", 60, 40.42, -3.70),
        City("CT", "Barcelona", 60, 41.39, 2.17),
        City("AN", "Seville", 60, 37.39, -5.98),
    ),
    "ITA": (
        City("25", "Milan", 60, 45.46, 9.19),
        City("62", "Rome", 60, 41.90, 12.50),
        City("72", "Naples", 60, 40.85, 14.27),
    ),
    "NLD": (
        City("NH", "Amsterdam", 60, 52.37, 4.90),
        City("ZH", "Rotterdam", 60, 51.92, 4.48),
        City("UT", "Utrecht", 60, 52.09, 5.12),
    ),
    "KOR": (
        City("11", "Seoul", 540, 37.57, 126.98),
        City("26", "Busan", 540, 35.18, 129.08),
        City("28", "Incheon", 540, 37.46, 126.71),
    ),
    "IDN": (
        City("JK", "Jakarta", 420, -6.21, 106.85),
        City("JI", "Surabaya", 420, -7.25, 112.75),
        City("JB", "Bandung", 420, -6.92, 107.61),
    ),
}
COUNTRIES: tuple[Country, ...] = (
    Country("USA", 0.34, 1.6, 0.35, _CITIES["USA"]),
    Country("GBR", 0.08, 1.3, 0.3, _CITIES["GBR"], gdpr=True),
    Country("DEU", 0.07, 1.2, 0.2, _CITIES["DEU"], gdpr=True, euro=True),
    Country("FRA", 0.06, 1.05, 0.15, _CITIES["FRA"], gdpr=True, euro=True),
    Country("CAN", 0.04, 1.3, 0.3, _CITIES["CAN"]),
    Country("BRA", 0.06, 0.45, -0.2, _CITIES["BRA"]),
    Country("IND", 0.10, 0.25, -0.5, _CITIES["IND"]),
    Country("JPN", 0.05, 1.3, 0.05, _CITIES["JPN"]),
    Country("AUS", 0.03, 1.25, 0.25, _CITIES["AUS"]),
    Country("MEX", 0.03, 0.45, -0.25, _CITIES["MEX"]),
    Country("ESP", 0.03, 0.8, 0.0, _CITIES["ESP"], gdpr=True, euro=True),
    Country("ITA", 0.03, 0.85, 0.0, _CITIES["ITA"], gdpr=True, euro=True),
    Country("NLD", 0.02, 1.1, 0.2, _CITIES["NLD"], gdpr=True, euro=True),
    Country("KOR", 0.02, 1.0, 0.1, _CITIES["KOR"]),
    Country("IDN", 0.04, 0.3, -0.4, _CITIES["IDN"]),
)
COUNTRY_CODES: tuple[str, ...] = tuple(country.code for country in COUNTRIES)


@dataclass(frozen=True, slots=True)
class OperatingSystem:
    name: str
    versions: tuple[str, ...]
    makes: tuple[str, ...]
    user_agent: str  # `{v}` is the OS version
    effect: float


_IOS = OperatingSystem(
    "iOS",
    ("16.7", "17.5", "18.1", "18.6"),
    ("Apple",),
    "Mozilla/5.0 (iPhone; CPU iPhone OS {v} like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/{v} Mobile/15E148 Safari/604.1",
    0.15,
)
_ANDROID = OperatingSystem(
    "Android",
    ("12", "13", "14", "15"),
    ("Samsung", "Google", "Xiaomi", "Motorola", "OnePlus", "Oppo"),
    "Mozilla/5.0 (Linux; Android {v}; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
    0.0,
)
_WINDOWS = OperatingSystem(
    "Windows",
    ("10", "11"),
    ("Dell", "HP", "Lenovo", "Microsoft", "Asus", "Acer"),
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    0.0,
)
_MACOS = OperatingSystem(
    "macOS",
    ("13.6", "14.7", "15.1"),
    ("Apple",),
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    0.1,
)
_LINUX = OperatingSystem(
    "Linux",
    ("6.8",),
    ("Dell", "Lenovo", "System76"),
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    -0.2,
)
_CHROME_OS = OperatingSystem(
    "Chrome OS",
    ("131",),
    ("Google", "Acer", "HP"),
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{v}.0.0.0 Safari/537.36",
    -0.1,
)
_FIRE_OS = OperatingSystem(
    "Fire OS", ("7", "8"), ("Amazon",), "Mozilla/5.0 (Linux; Android 11; AFTKA) Silk/131", 0.0
)
_ROKU = OperatingSystem("Roku", ("13.0", "14.0"), ("Roku", "TCL", "Hisense"), "Roku/DVP-{v}", 0.1)
_TIZEN = OperatingSystem(
    "Tizen", ("7.0", "8.0"), ("Samsung",), "Mozilla/5.0 (SMART-TV; Linux; Tizen {v}) TV", 0.05
)
_WEBOS = OperatingSystem("webOS", ("23", "24"), ("LG",), "Mozilla/5.0 (Web0S; Linux/SmartTV)", 0.0)
_ANDROID_TV = OperatingSystem(
    "Android TV",
    ("12", "14"),
    ("Google", "Sony", "TCL", "Xiaomi"),
    "Mozilla/5.0 (Linux; Android {v}; BRAVIA 4K) AppleWebKit/537.36",
    0.0,
)
_TVOS = OperatingSystem("tvOS", ("17.6", "18.1"), ("Apple",), "AppleTV14,1/{v}", 0.2)


@dataclass(frozen=True, slots=True)
class DeviceKind:
    devicetype: int  # AdCOM list: 1 mobile/tablet, 2 PC, 3 connected TV, 4 phone, 5 tablet
    weight: float
    systems: tuple[tuple[OperatingSystem, float], ...]
    screens: tuple[tuple[int, int], ...]
    # Local hour when this kind of device converts best, and how strongly hours matter.
    peak_hour: float
    hour_amplitude: float
    weekend_effect: float
    effect: float
    banner_sizes: tuple[tuple[tuple[int, int], float], ...]
    # (banner, video, native) shares of impressions.
    formats: tuple[float, float, float]
    # (connectiontype, weight): 1 ethernet, 2 wifi, 5 3G, 6 4G, 7 5G.
    connections: tuple[tuple[int, float], ...]
    app_share: float  # of requests from apps rather than websites


_MOBILE_SIZES = (((320, 50), 0.38), ((300, 250), 0.32), ((320, 100), 0.1), ((320, 480), 0.2))
_DESKTOP_SIZES = (
    ((300, 250), 0.36),
    ((728, 90), 0.26),
    ((160, 600), 0.1),
    ((300, 600), 0.16),
    ((970, 250), 0.12),
)
_MOBILE_CONNECTIONS = ((2, 0.5), (6, 0.3), (7, 0.14), (5, 0.06))

DEVICE_KINDS: tuple[DeviceKind, ...] = (
    DeviceKind(
        devicetype=4,
        weight=0.50,
        systems=((_IOS, 0.45), (_ANDROID, 0.55)),
        screens=((390, 844), (393, 852), (414, 896), (360, 800), (412, 915), (375, 667)),
        peak_hour=21.0,
        hour_amplitude=0.5,
        weekend_effect=0.15,
        effect=0.1,
        banner_sizes=_MOBILE_SIZES,
        formats=(0.82, 0.12, 0.06),
        connections=_MOBILE_CONNECTIONS,
        app_share=0.55,
    ),
    DeviceKind(
        devicetype=2,
        weight=0.31,
        systems=((_WINDOWS, 0.68), (_MACOS, 0.24), (_CHROME_OS, 0.05), (_LINUX, 0.03)),
        screens=((1920, 1080), (1366, 768), (1536, 864), (1440, 900), (2560, 1440)),
        peak_hour=13.0,
        hour_amplitude=0.4,
        weekend_effect=-0.2,
        effect=-0.1,
        banner_sizes=_DESKTOP_SIZES,
        formats=(0.86, 0.1, 0.04),
        connections=((2, 0.7), (1, 0.3)),
        app_share=0.03,
    ),
    DeviceKind(
        devicetype=5,
        weight=0.06,
        systems=((_IOS, 0.6), (_ANDROID, 0.33), (_FIRE_OS, 0.07)),
        screens=((810, 1080), (768, 1024), (820, 1180), (800, 1280)),
        peak_hour=20.0,
        hour_amplitude=0.5,
        weekend_effect=0.2,
        effect=0.3,
        banner_sizes=(*_MOBILE_SIZES, ((728, 90), 0.3)),
        formats=(0.8, 0.14, 0.06),
        connections=((2, 0.9), (6, 0.1)),
        app_share=0.5,
    ),
    DeviceKind(
        devicetype=3,
        weight=0.08,
        systems=(
            (_ROKU, 0.3),
            (_TIZEN, 0.2),
            (_ANDROID_TV, 0.18),
            (_FIRE_OS, 0.12),
            (_WEBOS, 0.12),
            (_TVOS, 0.08),
        ),
        screens=((1920, 1080), (3840, 2160)),
        peak_hour=21.0,
        hour_amplitude=0.6,
        weekend_effect=0.2,
        effect=0.5,
        banner_sizes=(),
        formats=(0.0, 1.0, 0.0),
        connections=((2, 0.7), (1, 0.3)),
        app_share=1.0,  # connected TVs only run apps
    ),
    DeviceKind(
        devicetype=1,
        weight=0.05,
        systems=((_ANDROID, 0.7), (_IOS, 0.3)),
        screens=((360, 640), (768, 1024)),
        peak_hour=21.0,
        hour_amplitude=0.5,
        weekend_effect=0.15,
        effect=0.0,
        banner_sizes=_MOBILE_SIZES,
        formats=(0.85, 0.1, 0.05),
        connections=_MOBILE_CONNECTIONS,
        app_share=0.5,
    ),
)

# (w, h): (floor in USD CPM before the country's price level, ground-truth logit shift)
BANNER_SIZES: dict[tuple[int, int], tuple[float, float]] = {
    (300, 250): (0.45, 0.2),
    (728, 90): (0.35, -0.2),
    (320, 50): (0.15, -0.5),
    (320, 100): (0.2, -0.3),
    (160, 600): (0.30, -0.1),
    (300, 600): (0.60, 0.4),
    (970, 250): (0.80, 0.3),
    (320, 480): (0.90, 0.5),
}
VIDEO_FLOOR, VIDEO_EFFECT = 2.5, 0.6
CTV_VIDEO_FLOOR = 9.0
NATIVE_FLOOR, NATIVE_EFFECT = 0.6, 0.1
INTERSTITIAL_EFFECT = 0.3
SLOW_CONNECTION_EFFECT = -0.3

# Words sites and apps are named from, each with the IAB content category it implies.
_PREFIXES = (
    "daily", "the", "my", "top", "go", "smart", "happy", "urban", "pocket", "super", "true",
    "open", "bright", "local", "quick", "big", "pure", "next", "real", "total",
)  # fmt: skip
_TOPICS = (
    ("news", "IAB12"), ("sports", "IAB17"), ("games", "IAB9-30"), ("recipes", "IAB8"),
    ("weather", "IAB15-10"), ("travel", "IAB20"), ("tech", "IAB19"), ("music", "IAB1-6"),
    ("cars", "IAB2"), ("finance", "IAB13"), ("health", "IAB7"), ("style", "IAB18"),
    ("movies", "IAB1-5"), ("puzzles", "IAB9-30"), ("garden", "IAB10"), ("pets", "IAB16"),
)  # fmt: skip
_TLDS = ((".com", 0.7), (".net", 0.1), (".org", 0.05), (".co", 0.05), (".io", 0.05), (".tv", 0.05))
_SECTIONS = ("article", "story", "video", "gallery", "post")
_BLOCKED_CATEGORIES = ("IAB25", "IAB26", "IAB7-39", "IAB8-5", "IAB8-18", "IAB9-9", "IAB14-1")
_BLOCKED_ADVERTISERS = ("rivalbrand.com", "cheapdeals.net", "casino-royale.io", "loans4u.com")
_VIDEO_MIMES = ("video/mp4", "video/webm", "application/javascript", "video/ogg")
_IP_FIRST_OCTETS = (24, 31, 37, 45, 62, 66, 73, 81, 86, 98, 109, 151, 176, 185, 201, 212)
_MOBILE_VIDEO = ((320, 480), (640, 360), (360, 640))
_ZERO_IFA = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True, slots=True)
class Inventory:
    """A site or an app: its publisher, content category and hidden quality."""

    domain: str
    bundle: str | None  # set for apps
    name: str
    publisher_id: str
    publisher_name: str
    category: str
    quality: float


@dataclass(frozen=True, slots=True)
class LabelledRequest:
    request: dict[str, Any]
    timestamp: float  # when it arrives, seconds since the epoch
    labels: list[int]  # one per impression, in `imp` order
    probabilities: list[float]  # the ground truth the labels were drawn from


class _Weighted(Generic[T]):
    """A weighted choice with the cumulative weights computed once, not on every draw."""

    __slots__ = ("_cumulative", "_total", "items")

    def __init__(self, pairs: Sequence[tuple[T, float]]) -> None:
        self.items = [item for item, _ in pairs]
        self._cumulative = list(itertools.accumulate(weight for _, weight in pairs))
        self._total = self._cumulative[-1]

    def pick(self, rng: random.Random) -> T:
        return self.items[bisect.bisect_right(self._cumulative, rng.random() * self._total)]


_COUNTRY_CHOICE = _Weighted([(country, country.weight) for country in COUNTRIES])
_DEVICE_CHOICE = _Weighted([(kind, kind.weight) for kind in DEVICE_KINDS])
_SYSTEM_CHOICES = {kind.devicetype: _Weighted(kind.systems) for kind in DEVICE_KINDS}
_SIZE_CHOICES = {
    kind.devicetype: _Weighted(kind.banner_sizes) for kind in DEVICE_KINDS if kind.banner_sizes
}
_CONNECTION_CHOICES = {kind.devicetype: _Weighted(kind.connections) for kind in DEVICE_KINDS}
_TLD_CHOICE = _Weighted(_TLDS)
_IMP_COUNT_CHOICE = _Weighted(((1, 0.8), (2, 0.12), (3, 0.05), (4, 0.03)))
_TMAX_CHOICE = _Weighted(
    ((80, 0.1), (100, 0.2), (120, 0.2), (150, 0.15), (200, 0.15), (250, 0.1), (300, 0.1))
)


class SyntheticTraffic:
    """A stream of labelled bid requests; the same seeds give the same stream.

    The world the traffic comes from (its sites, apps, publishers and their hidden quality)
    is drawn from `world_seed`, the stream of requests from `seed`. Every seed shares the
    default world, so a model trained on one seed's traffic is meaningful on another's.
    """

    def __init__(
        self, seed: int, *, world_seed: int = DEFAULT_WORLD_SEED, inventory_size: int = 400
    ) -> None:
        self.world_seed = world_seed
        self.inventory = _make_inventory(random.Random(world_seed), inventory_size)
        self.random = random.Random(seed)
        self._sites = _zipf([item for item in self.inventory if item.bundle is None])
        self._apps = _zipf([item for item in self.inventory if item.bundle is not None])

    def samples(self, count: int) -> Iterator[LabelledRequest]:
        for _ in range(count):
            yield self._sample()

    def _sample(self) -> LabelledRequest:
        rng = self.random
        country = _COUNTRY_CHOICE.pick(rng)
        city = rng.choice(country.cities)
        kind = _DEVICE_CHOICE.pick(rng)
        timestamp = _arrival(rng, city.utcoffset)
        local = time.gmtime(timestamp + city.utcoffset * 60)
        is_app = rng.random() < kind.app_share
        inventory = (self._apps if is_app else self._sites).pick(rng)
        system = _SYSTEM_CHOICES[kind.devicetype].pick(rng)
        connection = _CONNECTION_CHOICES[kind.devicetype].pick(rng)
        device = _device(rng, kind, system, connection, city, country, is_app)
        imps, imp_effects, usd_floors = _imps(rng, kind, country, is_app)
        request: dict[str, Any] = {
            "id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "imp": imps,
            "device": device,
            "at": 1 if rng.random() < 0.8 else 2,
            "tmax": _TMAX_CHOICE.pick(rng),
            "cur": ["USD"],
            "test": 0,
            "source": _source(rng, inventory),
            "regs": {"gdpr": 1} if country.gdpr else {"gdpr": 0, "us_privacy": "1YNN"},
        }
        request["app" if is_app else "site"] = _placement(rng, inventory, is_app)
        if not is_app or rng.random() < 0.3:
            request["user"] = {"id": uuid.UUID(int=rng.getrandbits(128)).hex}
        if rng.random() < 0.1:
            request["bcat"] = rng.sample(_BLOCKED_CATEGORIES, rng.randint(1, 3))
        if rng.random() < 0.05:
            request["badv"] = rng.sample(_BLOCKED_ADVERTISERS, rng.randint(1, 2))
        if rng.random() < 0.3:
            request["ext"] = {"exchange": {"dc": rng.choice(("us-east", "eu-west", "ap-south"))}}

        weekend = local.tm_wday >= 5
        context = (
            BASE_LOGIT
            + inventory.quality
            + country.effect
            + kind.effect
            + system.effect
            + kind.hour_amplitude * math.cos((local.tm_hour - kind.peak_hour) / 24 * 2 * math.pi)
            + (kind.weekend_effect if weekend else 0.0)
            + (SLOW_CONNECTION_EFFECT if connection == 5 else 0.0)
        )
        probabilities = [
            _sigmoid(context + effect - FLOOR_SLOPE * math.log1p(floor))
            for effect, floor in zip(imp_effects, usd_floors, strict=True)
        ]
        labels = [1 if rng.random() < p else 0 for p in probabilities]
        return LabelledRequest(request, timestamp, labels, probabilities)


def _make_inventory(rng: random.Random, size: int) -> list[Inventory]:
    inventory: list[Inventory] = []
    names: set[str] = set()
    publisher = ("", "")
    while len(inventory) < size:
        prefix = rng.choice(_PREFIXES)
        topic, category = rng.choice(_TOPICS)
        name = f"{prefix}{topic}{rng.choice(('', '', 'hub', 'now', 'zone', str(len(names))))}"
        if name in names:
            continue
        names.add(name)
        # Publishers own a handful of sites and apps each.
        if not publisher[0] or rng.random() < 0.45:
            publisher = (f"{rng.getrandbits(32):08x}", f"{prefix.title()}{topic.title()} Media")
        domain = name + _TLD_CHOICE.pick(rng)
        bundle = f"com.{name}.{rng.choice(('app', 'android', 'mobile'))}"
        inventory.append(
            Inventory(
                domain=domain,
                bundle=bundle if rng.random() < 0.4 else None,
                name=f"{prefix.title()} {topic.title()}",
                publisher_id=publisher[0],
                publisher_name=publisher[1],
                category=category,
                quality=rng.gauss(0.0, 0.8),
            )
        )
    return inventory


def _zipf(inventory: Sequence[Inventory]) -> _Weighted[Inventory]:
    """Zipf-like popularity: a few sites or apps carry most of the traffic."""
    return _Weighted([(item, 1.0 / (rank + 1) ** 1.1) for rank, item in enumerate(inventory)])


def _arrival(rng: random.Random, utcoffset: int) -> float:
    """A moment in the simulated week, busier in the user's daytime than at night."""
    while True:
        timestamp = SIMULATED_WEEK_START + rng.random() * WEEK_SECONDS
        local_hour = ((timestamp / 3600 + utcoffset / 60) % 24) - 14
        if rng.random() < 0.6 + 0.4 * math.cos(local_hour / 24 * 2 * math.pi):
            return timestamp


def _device(
    rng: random.Random,
    kind: DeviceKind,
    system: OperatingSystem,
    connection: int,
    city: City,
    country: Country,
    is_app: bool,
) -> dict[str, Any]:
    version = rng.choice(system.versions)
    w, h = rng.choice(kind.screens)
    device: dict[str, Any] = {
        "ua": system.user_agent.format(v=version),
        # Exchanges truncate the IP address's last octet before passing it on.
        "ip": f"{rng.choice(_IP_FIRST_OCTETS)}.{rng.randrange(256)}.{rng.randrange(256)}.0",
        "devicetype": kind.devicetype,
        "make": rng.choice(system.makes),
        "os": system.name,
        "osv": version,
        "w": w,
        "h": h,
        "connectiontype": connection,
        "js": 1,
        "geo": {
            "type": 2,  # derived from the IP address
            "country": country.code,
            "region": city.region,
            "city": city.name,
            "lat": round(city.lat + rng.uniform(-0.2, 0.2), 2),
            "lon": round(city.lon + rng.uniform(-0.2, 0.2), 2),
            "utcoffset": city.utcoffset,
        },
    }
    if is_app:
        # Users who limit ad tracking send an all-zero advertising id; far more do on iOS.
        limited = rng.random() < (0.6 if system is _IOS else 0.1)
        device["lmt"] = int(limited)
        device["ifa"] = _ZERO_IFA if limited else str(uuid.UUID(int=rng.getrandbits(128)))
    return device


def _placement(rng: random.Random, inventory: Inventory, is_app: bool) -> dict[str, Any]:
    publisher = {"id": inventory.publisher_id, "name": inventory.publisher_name}
    if is_app:
        return {
            "id": f"{inventory.publisher_id}-{inventory.bundle}",
            "name": inventory.name,
            "bundle": inventory.bundle,
            "cat": [inventory.category],
            "publisher": publisher,
        }
    site: dict[str, Any] = {
        "id": f"{inventory.publisher_id}-{inventory.domain}",
        "name": inventory.name,
        "domain": inventory.domain,
        "page": f"https://{inventory.domain}/{rng.choice(_SECTIONS)}/{rng.randint(1, 10**6)}",
        "cat": [inventory.category],
        "publisher": {**publisher, "domain": inventory.domain},
    }
    if rng.random() < 0.3:
        site["ref"] = rng.choice(("https://www.google.com/", "https://news.google.com/"))
    return site


def _source(rng: random.Random, inventory: Inventory) -> dict[str, Any]:
    node = {"asi": "exchange.example", "sid": inventory.publisher_id, "hp": 1}
    return {
        "tid": str(uuid.UUID(int=rng.getrandbits(128))),
        "schain": {"complete": 1, "ver": "1.0", "nodes": [node]},
    }


def _imps(
    rng: random.Random, kind: DeviceKind, country: Country, is_app: bool
) -> tuple[list[dict[str, Any]], list[float], list[float]]:
    """The impressions, with each one's ground-truth logit shift and floor in USD."""
    imps: list[dict[str, Any]] = []
    effects: list[float] = []
    usd_floors: list[float] = []
    banner_share, video_share, _ = kind.formats
    for index in range(_IMP_COUNT_CHOICE.pick(rng)):
        imp: dict[str, Any] = {"id": str(index + 1), "secure": 1}
        draw = rng.random()
        if draw < banner_share:
            base_floor, effect = _banner(rng, kind, imp)
        elif draw < banner_share + video_share:
            base_floor, effect = _video(rng, kind, imp)
        else:
            base_floor, effect = _native(imp)
        if kind.devicetype != 3 and rng.random() < 0.4:
            imp["tagid"] = f"slot-{rng.randint(1, 40)}"
        if rng.random() < 0.15:
            imp["ext"] = {"gpid": f"/{rng.randint(1000, 9999)}/{'app' if is_app else 'web'}/top"}
        if imp.get("instl"):
            effect += INTERSTITIAL_EFFECT
        # 5% of impressions come without a floor at all.
        floor = 0.0
        if rng.random() < 0.95:
            floor = max(0.01, round(base_floor * country.cpm * rng.lognormvariate(0.0, 0.5), 2))
            if country.euro and rng.random() < 0.3:
                imp["bidfloor"] = round(floor / USD_PER_EUR, 2)
                imp["bidfloorcur"] = "EUR"
            else:
                imp["bidfloor"] = floor
                imp["bidfloorcur"] = "USD"
        imps.append(imp)
        effects.append(effect)
        usd_floors.append(floor)
    return imps, effects, usd_floors


def _banner(rng: random.Random, kind: DeviceKind, imp: dict[str, Any]) -> tuple[float, float]:
    sizes = _SIZE_CHOICES[kind.devicetype]
    size = sizes.pick(rng)
    banner: dict[str, Any] = {"pos": rng.choice((0, 1, 1, 3)), "api": [3, 5]}
    if rng.random() < 0.3:
        # Multi-size slots list the preferred size first.
        others = [other for other in rng.sample(sizes.items, 2) if other != size]
        banner["format"] = [{"w": w, "h": h} for w, h in (size, *others)]
    else:
        banner["w"], banner["h"] = size
    imp["banner"] = banner
    if size == (320, 480) and rng.random() < 0.8:
        imp["instl"] = 1
    return BANNER_SIZES[size]


def _video(rng: random.Random, kind: DeviceKind, imp: dict[str, Any]) -> tuple[float, float]:
    is_tv = kind.devicetype == 3
    if is_tv:
        w, h = 1920, 1080
    else:
        w, h = rng.choice(((640, 360), (1280, 720)) if kind.devicetype == 2 else _MOBILE_VIDEO)
    maxduration = rng.choice((15, 30, 30, 60))
    imp["video"] = {
        "mimes": rng.sample(_VIDEO_MIMES, rng.randint(1, 3)),
        "minduration": rng.choice((0, 5)),
        "maxduration": maxduration,
        "protocols": [2, 3, 5, 6, 7, 8],
        "w": w,
        "h": h,
        "startdelay": rng.choice((0, 0, -1)),
        "plcmt": 1 if is_tv else rng.choice((1, 2, 4)),
        "linearity": 1,
        "skip": 0 if is_tv or maxduration <= 15 else rng.choice((0, 1)),
    }
    if not is_tv and h > w:
        imp["instl"] = 1
    return (CTV_VIDEO_FLOOR if is_tv else VIDEO_FLOOR), VIDEO_EFFECT


def _native(imp: dict[str, Any]) -> tuple[float, float]:
    native_request = {
        "ver": "1.2",
        "context": 2,
        "plcmttype": 1,
        "assets": [
            {"id": 1, "required": 1, "title": {"len": 90}},
            {"id": 2, "required": 1, "img": {"type": 3, "wmin": 300, "hmin": 157}},
            {"id": 3, "required": 0, "data": {"type": 2, "len": 140}},
        ],
    }
    imp["native"] = {"request": orjson.dumps(native_request).decode(), "ver": "1.2"}
    return NATIVE_FLOOR, NATIVE_EFFECT


def generate_bid_requests(count: int, seed: int) -> list[dict[str, Any]]:
    """`count` realistic bid requests, the same ones for the same seed."""
    return [sample.request for sample in SyntheticTraffic(seed).samples(count)]


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))

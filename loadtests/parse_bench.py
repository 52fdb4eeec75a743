"""Microbenchmark: decode + validate of a typical bid request against `orjson.loads`.

    python -m loadtests.parse_bench [--repeats 7] [--number 20000]

Both are timed side by side in one process, alternating, and the median of the repeats is
reported with the ratio (the target: decode + validate costs at most 2x orjson.loads).
"""

from __future__ import annotations

import argparse
import statistics
import timeit

import orjson

from bidder.openrtb import decode_bid_request

# A typical exchange request: one banner impression with formats, a site with publisher and
# content, a device with geo and user agent, a user with ids, and the usual ext objects.
TYPICAL_REQUEST = orjson.dumps(
    {
        "id": "80ce30c53c16e6ede735f123ef6e32361bfc7b22",
        "at": 1,
        "tmax": 120,
        "cur": ["USD"],
        "imp": [
            {
                "id": "1",
                "tagid": "homepage-top",
                "bidfloor": 0.35,
                "bidfloorcur": "USD",
                "secure": 1,
                "banner": {
                    "w": 300,
                    "h": 250,
                    "format": [{"w": 300, "h": 250}, {"w": 320, "h": 50}],
                    "pos": 1,
                    "battr": [1, 3, 8],
                },
                "ext": {"gpid": "/1234/homepage#top", "data": {"pbadslot": "top"}},
            }
        ],
        "site": {
            "id": "102855",
            "domain": "news.example",
            "page": "https://news.example/world/2026/11/25/story.html",
            "cat": ["IAB12"],
            "publisher": {"id": "8953", "name": "News Example", "domain": "news.example"},
            "content": {"language": "en", "keywords": "world,politics"},
        },
        "device": {
            "ua": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            "ip": "192.0.2.44",
            "devicetype": 4,
            "make": "Apple",
            "model": "iPhone",
            "os": "iOS",
            "osv": "17.4",
            "w": 390,
            "h": 844,
            "language": "en",
            "connectiontype": 2,
            "geo": {
                "country": "USA",
                "region": "CA",
                "city": "Los Angeles",
                "utcoffset": -480,
                "lat": 34.05,
                "lon": -118.24,
                "type": 2,
            },
        },
        "user": {
            "id": "55816b39711f9b5acf3b90e313ed29e51665623f",
            "buyeruid": "545678765467876567898765678987654",
            "ext": {"eids": [{"source": "id5-sync.com", "uids": [{"id": "ID5*abc", "atype": 1}]}]},
        },
        "bcat": ["IAB25", "IAB26"],
        "badv": ["competitor.example"],
        "source": {
            "fd": 1,
            "tid": "0c3a2e3c-5a7d-4a8f-9b1c-2d3e4f5a6b7c",
            "ext": {
                "schain": {
                    "ver": "1.0",
                    "complete": 1,
                    "nodes": [{"asi": "exchange.example", "sid": "8953", "hp": 1}],
                }
            },
        },
        "regs": {"coppa": 0, "ext": {"gdpr": 0, "us_privacy": "1---"}},
    }
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args(argv)
    body = TYPICAL_REQUEST
    decode_bid_request(body)  # must be valid, and warms both paths
    orjson_times, bidder_times = [], []
    for _ in range(args.repeats):
        orjson_times.append(timeit.timeit(lambda: orjson.loads(body), number=args.number))
        bidder_times.append(timeit.timeit(lambda: decode_bid_request(body), number=args.number))
    orjson_us = statistics.median(orjson_times) / args.number * 1e6
    bidder_us = statistics.median(bidder_times) / args.number * 1e6
    print(f"request size            {len(body)} bytes")
    print(f"orjson.loads            {orjson_us:.2f} us")
    print(f"decode_bid_request      {bidder_us:.2f} us  (decode + validate)")
    print(f"ratio                   {bidder_us / orjson_us:.2f}x  (target <= 2.00x)")


if __name__ == "__main__":
    main()

"""Payload types shared by the typed-handler app and the tests that enqueue."""

from __future__ import annotations

import dataclasses
from typing import TypedDict


@dataclasses.dataclass
class Address:
    city: str
    postcode: str


@dataclasses.dataclass
class Line:
    sku: str
    quantity: int


@dataclasses.dataclass
class Order:
    order_id: int
    ship_to: Address
    lines: list[Line]
    note: str | None = None


@dataclasses.dataclass
class Parcel:
    label: str
    grams: int


@dataclasses.dataclass
class Shipment:
    parcels: list[Parcel] | None = None


class Point(TypedDict):
    x: int
    y: int

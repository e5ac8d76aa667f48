"""Kubernetes resource quantities ("500m", "1.5", "4Gi", "1e3") as exact decimals."""

import re
from decimal import Decimal, InvalidOperation

__all__ = ["QuantityError", "parse_quantity", "format_cpu", "format_bytes"]

_SUFFIXES: dict[str, Decimal] = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_quantity(value: str | int | float) -> Decimal:
    """Parse a Kubernetes quantity into an exact :class:`~decimal.Decimal`.

    >>> parse_quantity("500m"), parse_quantity("2Gi"), parse_quantity(3)
    (Decimal('0.500'), Decimal('2147483648'), Decimal('3'))
    """
    if isinstance(value, int | float):
        return Decimal(str(value))
    match = _QUANTITY.match(str(value).strip())
    if not match or match.group(2) not in _SUFFIXES:
        raise QuantityError(f"not a Kubernetes quantity: {value!r}")
    try:
        number = Decimal(match.group(1))
    except InvalidOperation as exc:
        raise QuantityError(f"not a Kubernetes quantity: {value!r}") from exc
    return number * _SUFFIXES[match.group(2)]


def format_cpu(cores: Decimal) -> str:
    """Format CPU cores canonically: whole cores as "2", fractions in millicores ("1500m")."""
    if cores == cores.to_integral_value():
        return str(int(cores))
    return f"{int(cores * 1000)}m"


def format_bytes(size: Decimal) -> str:
    """Format a byte count with the largest binary suffix that divides it ("4Gi", "1536Mi")."""
    whole = int(size)
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = int(_SUFFIXES[suffix])
        if whole and whole % unit == 0:
            return f"{whole // unit}{suffix}"
    return str(whole)

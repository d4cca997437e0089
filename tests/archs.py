"""Canonical arch strings shared by tests (one place, so every test exercises the same fixtures)."""

MBV3_ARCHS = (
    "r128/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3",
    "r160/k3e4,k3e4,k5e4,k7e4/k3e4,k3e4/k7e3,k7e4,k5e6/k7e3,k5e3/k3e6,k7e3",
    "r224/k7e6,k7e6,k7e6,k7e6/k7e6,k7e6,k7e6,k7e6/k7e6,k7e6,k7e6,k7e6/k7e6,k7e6,k7e6,k7e6/k7e6,k7e6,k7e6,k7e6",
)

TINY_ARCHS = (
    "r24/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3/k3e3,k3e3",
    "r28/k5e4,k3e6,k7e3/k3e3,k5e6/k7e4,k7e4,k3e3,k5e6/k3e6,k3e4/k5e3,k7e6,k3e4",
    "r32/k7e6,k7e6,k7e6,k7e6/k7e6,k7e6,k7e6,k7e6/k7e6,k7e6,k7e6,k7e6/k7e6,k7e6,k7e6,k7e6/k7e6,k7e6,k7e6,k7e6",
)

BAD_ARCH_STRINGS = (
    "",
    "r224",
    "224/k3e3",
    "r224/k3e3,,k3e3",
    "r224/k4e3",
    "r224/k3e0",
    "r224/k3",
    "r224/e3k3",
    "r224//k3e3",
    "r0/k3e3",
    "rx/k3e3",
    "r224/k3e3;k3e3",
)

NON_CANONICAL = {
    "R224/K3E3": "r224/k3e3",
    "r224/k03e3": "r224/k3e3",
    " r224/k3e3": "r224/k3e3",
    "r224/k3e3, k5e4": "r224/k3e3,k5e4",
}

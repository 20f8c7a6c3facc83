"""Memory budgets of microcontroller boards: does the model fit?

The model (``.tflite`` bytes) lives in flash; the tensor arena lives in RAM.
:func:`fit` compares both with a device profile and says by how much they fit
or miss. The profiles list the chip's total on-chip RAM and flash; your
firmware (TFLM runtime code, typically 50-150 KiB of flash, plus stack, heap
and application buffers in RAM) needs part of both, so pass
``ram_reserved``/``flash_reserved`` for a tight answer.

Example:
    >>> fit("cortex-m4", model_bytes=20_000, arena_bytes=8_192)["fits"]
    True
    >>> fit(None, model_bytes=20_000, arena_bytes=8_192, ram=4096,
    ...     flash=65536)["fits_ram"]
    False
"""

from __future__ import annotations

import dataclasses

__all__ = ["PROFILES", "DeviceProfile", "fit", "get"]

KiB = 1024
MiB = 1024 * KiB


@dataclasses.dataclass(frozen=True)
class DeviceProfile:
    """A board's memory: ``ram`` and ``flash`` in bytes, plus what it is."""

    name: str
    ram: int
    flash: int
    note: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PROFILES: dict[str, DeviceProfile] = {p.name: p for p in (
    DeviceProfile("cortex-m0+", 32 * KiB, 256 * KiB,
                  "e.g. SAMD21 (Arduino Zero/MKR): 32 KiB SRAM, 256 KiB flash"),
    DeviceProfile("cortex-m4", 256 * KiB, 1 * MiB,
                  "typical Cortex-M4F part (e.g. STM32F4 class): 256 KiB "
                  "SRAM, 1 MiB flash"),
    DeviceProfile("nrf52840", 256 * KiB, 1 * MiB,
                  "Nordic nRF52840 (Arduino Nano 33 BLE Sense): 256 KiB RAM, "
                  "1 MiB flash"),
    DeviceProfile("esp32-s3", 512 * KiB, 8 * MiB,
                  "ESP32-S3: 512 KiB internal SRAM (no PSRAM counted), 8 MiB "
                  "external flash as on common modules"),
    DeviceProfile("rp2040", 264 * KiB, 2 * MiB,
                  "Raspberry Pi Pico: 264 KiB SRAM, 2 MiB external flash"),
    DeviceProfile("cortex-m7", 512 * KiB, 2 * MiB,
                  "typical Cortex-M7 part (e.g. STM32F7 class): 512 KiB SRAM, "
                  "2 MiB flash"),
)}

_ALIASES = {"cortex-m0": "cortex-m0+", "m0+": "cortex-m0+", "m4": "cortex-m4",
            "m7": "cortex-m7", "esp32s3": "esp32-s3", "nrf52": "nrf52840",
            "pico": "rp2040"}


def get(identifier: str | dict | DeviceProfile) -> DeviceProfile:
    """A profile from its name (case-insensitive), a dict, or an instance.

    A dict needs ``ram`` and ``flash`` in bytes (``name`` optional).

    Raises:
        ValueError: unknown name, with the valid names listed.
    """
    if isinstance(identifier, DeviceProfile):
        return identifier
    if isinstance(identifier, dict):
        try:
            return DeviceProfile(name=str(identifier.get("name", "custom")),
                                 ram=int(identifier["ram"]),
                                 flash=int(identifier["flash"]),
                                 note=str(identifier.get("note", "")))
        except KeyError as exc:
            raise ValueError(f"a device profile dict needs 'ram' and 'flash' "
                             f"in bytes; missing {exc}. Got: {identifier}")
    if isinstance(identifier, str):
        key = identifier.strip().lower()
        key = _ALIASES.get(key, key)
        if key in PROFILES:
            return PROFILES[key]
    raise ValueError(f"Could not interpret device profile {identifier!r}; "
                     f"valid names: {', '.join(sorted(PROFILES))} (or pass "
                     f"ram=/flash= in bytes)")


def _side(capacity: int, used: int) -> dict:
    headroom = capacity - used
    return {"capacity": capacity, "used": used, "headroom": headroom,
            "used_pct": round(100.0 * used / capacity, 2),
            "headroom_pct": round(100.0 * headroom / capacity, 2),
            "fits": headroom >= 0}


def fit(profile: str | dict | DeviceProfile | None = None, *,
        model_bytes: int, arena_bytes: int, ram: int | None = None,
        flash: int | None = None, ram_reserved: int = 0,
        flash_reserved: int = 0) -> dict:
    """Whether the model fits in flash and its arena fits in RAM.

    Args:
        profile: a name from :data:`PROFILES`, a dict, a
            :class:`DeviceProfile`, or ``None`` for a custom board given by
            ``ram`` and ``flash``.
        model_bytes: size of the ``.tflite`` (it goes to flash).
        arena_bytes: tensor arena (it goes to RAM), normally the recommended
            arena from :func:`converters.runtimes.tflm.validate`.
        ram: bytes; overrides the profile's RAM.
        flash: bytes; overrides the profile's flash.
        ram_reserved: RAM the rest of the firmware needs.
        flash_reserved: flash the rest of the firmware (TFLM code included)
            needs.

    Returns:
        ``{"profile", "ram": {capacity, used, headroom, used_pct,
        headroom_pct, fits}, "flash": {...}, "fits_ram", "fits_flash",
        "fits"}``; a negative headroom is the shortfall.

    Raises:
        ValueError: no profile and no ``ram``/``flash``, or a negative size.
    """
    if profile is None:
        if ram is None or flash is None:
            raise ValueError(f"give a device profile ({', '.join(sorted(PROFILES))}) "
                             f"or both ram= and flash= in bytes")
        base = DeviceProfile("custom", int(ram), int(flash))
    else:
        base = get(profile)
    capacity_ram = int(ram) if ram is not None else base.ram
    capacity_flash = int(flash) if flash is not None else base.flash
    for label, value in (("model_bytes", model_bytes),
                         ("arena_bytes", arena_bytes), ("ram", capacity_ram),
                         ("flash", capacity_flash),
                         ("ram_reserved", ram_reserved),
                         ("flash_reserved", flash_reserved)):
        if int(value) < 0 or (label in ("ram", "flash") and int(value) == 0):
            raise ValueError(f"{label} must be a positive byte count. "
                             f"Got: {value}")
    ram_side = _side(capacity_ram, int(arena_bytes) + int(ram_reserved))
    flash_side = _side(capacity_flash, int(model_bytes) + int(flash_reserved))
    return {"profile": base.name, "ram": ram_side, "flash": flash_side,
            "fits_ram": ram_side["fits"], "fits_flash": flash_side["fits"],
            "fits": ram_side["fits"] and flash_side["fits"]}

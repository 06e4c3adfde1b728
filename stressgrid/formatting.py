"""Numbers for humans, the same in the terminal, the HTML report and the run summary."""


def format_us(value, micro="us"):
    """A microsecond value for humans: ``850us``, ``12.3ms``, ``1.25s``."""
    if value is None:
        return "-"
    if value < 1000:
        return f"{value:.0f}{micro}"
    if value < 1_000_000:
        ms = value / 1000
        return f"{ms:.1f}ms" if ms < 100 else f"{ms:.0f}ms"
    return f"{value / 1_000_000:.2f}s"


def format_rate(value):
    """A rate or count for humans: ``1,234``, ``12.5``, ``0.25``."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}".rstrip("0").rstrip(".") if value else "0"


def format_bytes(value):
    """A byte count in decimal units: ``512B``, ``1.2MB``."""
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1000
    return f"{value:.1f}TB"


def format_duration(ms):
    """Milliseconds as ``m:ss`` or ``h:mm:ss``."""
    seconds = max(0, int(round((ms or 0) / 1000)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"

"""Line charts as inline SVG text, for the self-contained HTML report.

``line_chart`` draws named lines of ``(x, y)`` points with axes, ticks and a
legend; the y axis is linear from 0 or logarithmic (``log_y``). Each line's
points carry an SVG ``<title>`` per point, so a browser shows values on hover
with no script. Nothing here reads or writes files.
"""
import html
import math

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777")
WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 34


def nice_step(span, count=5):
    """A round tick step (1, 2 or 5 times a power of ten) giving about ``count`` ticks."""
    if span <= 0:
        return 1.0
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _ticks(low, high, count=5):
    step = nice_step(high - low, count)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(value)
        value += step
    return ticks


def line_chart(title, lines, y_format=str, x_format=lambda x: f"{x:g}", log_y=False,
               x_ticks=None, x_label="seconds", x_range=None, bands=()):
    """An ``<svg>`` chart of ``lines``: ``[(label, [(x, y), ...]), ...]``.

    ``y_format``/``x_format`` turn values into tick and hover text; ``x_ticks``
    (``[(x, text)]``) replaces the computed x ticks; ``x_range`` (``(low, high)``)
    the x span of the points; ``bands`` (``[(x from, x to, name)]``) are shaded behind
    the lines with the class ``band band-<name>``.
    """
    points = [(x, y) for _, line in lines for x, y in line if y is not None]
    if log_y:
        points = [(x, y) for x, y in points if y > 0]
    body = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'role="img" aria-label="{html.escape(title)}">',
            f'<text x="{LEFT}" y="16" class="title">{html.escape(title)}</text>']
    if not points:
        body.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" class="empty">no data</text></svg>')
        return "".join(body)
    x_low, x_high = x_range or (min(x for x, _ in points), max(x for x, _ in points))
    if x_high <= x_low:
        x_high = x_low + 1
    if log_y:
        y_low = 10 ** math.floor(math.log10(min(y for _, y in points)))
        y_high = 10 ** math.ceil(math.log10(max(y for _, y in points)))
        if y_high <= y_low:
            y_high = y_low * 10
        y_ticks = [10 ** e for e in range(round(math.log10(y_low)), round(math.log10(y_high)) + 1)]

        def to_y(y):
            return (math.log10(y) - math.log10(y_low)) / (math.log10(y_high) - math.log10(y_low))
    else:
        y_low, y_high = 0.0, max(y for _, y in points) * 1.05 or 1.0
        y_ticks = _ticks(y_low, y_high)

        def to_y(y):
            return (y - y_low) / (y_high - y_low)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x):
        return LEFT + (x - x_low) / (x_high - x_low) * plot_w

    def py(y):
        return TOP + plot_h - to_y(y) * plot_h

    body.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" class="plot"/>')
    for start, end, name in bands:
        left, right = px(max(start, x_low)), px(min(end, x_high))
        body.append(f'<rect x="{left:.1f}" y="{TOP}" width="{max(right - left, 1):.1f}" height="{plot_h}" '
                    f'class="band band-{html.escape(name)}"><title>{html.escape(name)}</title></rect>')
    for tick in y_ticks:
        y = py(tick)
        body.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                    f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="ytick">{html.escape(y_format(tick))}</text>')
    for tick, text in x_ticks or [(t, x_format(t)) for t in _ticks(x_low, x_high, 8)]:
        if x_low <= tick <= x_high:
            x = px(tick)
            body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + plot_h}" class="grid"/>'
                        f'<text x="{x:.1f}" y="{TOP + plot_h + 16}" class="xtick">{html.escape(text)}</text>')
    body.append(f'<text x="{LEFT + plot_w}" y="{HEIGHT - 2}" class="xlabel">{html.escape(x_label)}</text>')
    legend_x = LEFT + 8 + 7.5 * len(title)
    for index, (label, line) in enumerate(lines):
        color = PALETTE[index % len(PALETTE)]
        kept = [(x, y) for x, y in line if y is not None and (y > 0 or not log_y)]
        coordinates = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in kept)
        body.append(f'<g class="line" data-label="{html.escape(label)}">'
                    f'<polyline points="{coordinates}" fill="none" stroke="{color}" stroke-width="1.6"/>')
        if len(kept) <= 400:  # hover values; a longer line is read from its shape
            body.extend(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.2" fill="{color}">'
                        f'<title>{html.escape(label)}: {html.escape(y_format(y))} at '
                        f'{html.escape(x_format(x))}</title></circle>' for x, y in kept)
        body.append("</g>")
        body.append(f'<text x="{legend_x:.0f}" y="16" class="legend" fill="{color}">'
                    f'{html.escape(label)}</text>')
        legend_x += 7 * len(label) + 18
    body.append("</svg>")
    return "".join(body)

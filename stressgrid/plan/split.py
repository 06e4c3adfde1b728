"""Splitting device counts exactly: nothing is lost to rounding.

A block (a dict with ``size``) may carry feeder rows: ``data``, a list, and
``data_offset``, the row of its first device. Device ``k`` of the block gets
row ``data[(data_offset + k) % len(data)]``. Every split here gives each part
the consecutive devices it takes and, through ``block_part``, the rows of
exactly those devices, so the whole fleet uses every row once before any
repeats, however the block is divided among cohorts, generators and workers.
"""


def split_exactly(total, parts):
    """``total`` as ``parts`` near-equal non-negative integers that sum to ``total``.

    The first ``total % parts`` shares get one more: ``split_exactly(10, 3)`` is
    ``[4, 3, 3]``.
    """
    if parts < 1:
        raise ValueError("cannot split among zero parts")
    if total < 0:
        raise ValueError("cannot split a negative total")
    share, extra = divmod(total, parts)
    return [share + (1 if i < extra else 0) for i in range(parts)]


def block_part(block, start, size):
    """Devices ``start .. start + size - 1`` of ``block`` as a block of their own.

    A part smaller than the block's rows carries only its own rows; a bigger
    one keeps every row and the offset of its first device's.
    """
    part = dict(block, size=size)
    rows = block.get("data")
    if rows:
        first = (block.get("data_offset", 0) + start) % len(rows)
        if size < len(rows):
            part["data"] = rows[first:first + size] + rows[:max(0, first + size - len(rows))]
            first = 0
        if first:
            part["data_offset"] = first
        else:
            part.pop("data_offset", None)
    return part


def split_blocks(blocks, parts, rotate=0):
    """Split each block's ``size`` over ``parts``; returns one block list per part.

    ``blocks`` are dicts with ``size``. ``rotate`` shifts which parts get the
    remainders, so that successive cohorts spread their extra devices.
    A part's list leaves out blocks whose share is zero.
    """
    result = [[] for _ in range(parts)]
    for block in blocks:
        shares = split_exactly(block["size"], parts)
        start = 0
        for i in range(parts):
            share = shares[(i - rotate) % parts]
            if share:
                result[i].append(block_part(block, start, share))
                start += share
    return result

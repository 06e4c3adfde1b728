"""Splitting device counts exactly: nothing is lost to rounding."""


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


def split_blocks(blocks, parts, rotate=0):
    """Split each block's ``size`` over ``parts``; returns one block list per part.

    ``blocks`` are dicts with ``size``. ``rotate`` shifts which parts get the
    remainders, so that successive cohorts spread their extra devices.
    A part's list leaves out blocks whose share is zero.
    """
    result = [[] for _ in range(parts)]
    for block in blocks:
        shares = split_exactly(block["size"], parts)
        for i in range(parts):
            share = shares[(i - rotate) % parts]
            if share:
                result[i].append(dict(block, size=share))
    return result


def ramp_cohorts(size, steps):
    """Device counts of the ramp-up cohorts of a ``size``-device block."""
    return split_exactly(size, steps)

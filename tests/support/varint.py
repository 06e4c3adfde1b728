"""The unsigned LEB128 varint the histogram wire form uses, for tests that build encodings by hand."""


def varint(value):
    """``value`` (0 <= value < 2**64) as varint bytes."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)

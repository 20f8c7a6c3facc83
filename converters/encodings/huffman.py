"""HUFFMAN encoding: a prefix code per value, decoded by multi-level tables.

The layout the TFLM kernel reads (``decode_state_huffman.cc``, decode type 1;
"Xtensa format" tables):

* encoded tensor: the code words of the elements in C order, as a bit stream
  read most significant bit first from big-endian 32-bit words (so: bytes in
  stream order), padded with whole words so that no table look-up reads past
  the end;
* ancillary tensor: DCM with byte 4 = Huffman version 1 and byte 5 =
  ``(log2(first table size) - 1) << 4 | (1 if 32-bit entries)``, then the
  tables. A look-up reads ``w`` bits and indexes a table of ``2**w``
  entries. A 16-bit entry is either a symbol, ``0x8000 | bits << 11 |
  value`` (``bits`` = code bits used at this level; the rest of the ``w``
  bits are put back), or a link, ``(w' - 1) << 11 | offset``: read ``w'``
  more bits and index the table at ``this entry + offset``. 32-bit entries
  have the same fields at bits 31, 30-27 and 26-0.

Values are the tensor's own (int8, or int16 with 32-bit entries), so
Huffman over a clustered tensor is LUT and entropy coding in one: a pruned,
16-cluster tensor's zeros take one bit each. Code lengths are optimal
(``heapq`` Huffman); the table widths minimize the table entries.

Example:
    >>> enc = encode(weights)
    >>> enc.detail["bits_per_value"]
"""

from __future__ import annotations

import heapq
import itertools

import numpy as np

from converters.encodings.decode import (DCM_BYTES, DecodeType, Encoded,
                                         EncodingError, dcm)

__all__ = ["decode", "encode"]

_VERSION = 1
_MAX_WIDTH = 15          # 4-bit bit-count fields: a symbol uses <= 15 bits
_MAX_SYMBOLS = 4096      # int16 tensors with more distinct values: refuse
_OFFSET_16 = 0x7FF       # link offset field of a 16-bit entry


def _code_lengths(counts: np.ndarray) -> np.ndarray:
    """Huffman code length of each symbol (1 for a lone symbol)."""
    if len(counts) == 1:
        return np.ones(1, np.int64)
    tie = itertools.count()
    heap = [(int(c), next(tie), [k]) for k, c in enumerate(counts)]
    heapq.heapify(heap)
    lengths = np.zeros(len(counts), np.int64)
    while len(heap) > 1:
        c1, _, a = heapq.heappop(heap)
        c2, _, b = heapq.heappop(heap)
        lengths[a + b] += 1
        heapq.heappush(heap, (c1 + c2, next(tie), a + b))
    return lengths


def _canonical(lengths: np.ndarray) -> np.ndarray:
    """Canonical code words (shorter first, then by symbol order)."""
    codes = np.zeros(len(lengths), np.uint64)
    code, prev = 0, None
    for k in sorted(range(len(lengths)), key=lambda k: (lengths[k], k)):
        if prev is not None:
            code = (code + 1) << int(lengths[k] - prev)
        codes[k], prev = code, lengths[k]
    return codes


class _Node:
    __slots__ = ("kids", "symbol", "height")

    def __init__(self):
        self.kids: list = [None, None]
        self.symbol: int | None = None
        self.height = 0


def _trie(codes: np.ndarray, lengths: np.ndarray) -> _Node:
    root = _Node()
    for k, (code, n) in enumerate(zip(codes.tolist(), lengths.tolist())):
        node = root
        for i in range(n - 1, -1, -1):
            bit = (code >> i) & 1
            if node.kids[bit] is None:
                node.kids[bit] = _Node()
            node = node.kids[bit]
        node.symbol = k

    def height(node: _Node) -> int:
        if node.symbol is None:
            node.height = 1 + max(height(kid) for kid in node.kids)
        return node.height
    height(root)
    return root


def _level(node: _Node, width: int) -> list[tuple[int, _Node, int]]:
    """``(index prefix, node, depth)``: leaves within ``width`` bits of
    ``node`` and the inner nodes exactly ``width`` bits below it."""
    out, todo = [], [(0, node, 0)]
    while todo:
        prefix, n, depth = todo.pop()
        if n.symbol is not None or depth == width:
            out.append((prefix, n, depth))
        else:
            todo += [(prefix << 1 | b, n.kids[b], depth + 1) for b in (0, 1)]
    return out


def _best(node: _Node, memo: dict) -> tuple[int, int]:
    """(fewest table entries to decode below ``node``, first width)."""
    if id(node) not in memo:
        best, inner = None, [node]
        for w in range(1, min(_MAX_WIDTH, node.height) + 1):
            inner = [k for n in inner for k in n.kids if k.symbol is None]
            cost = (1 << w) + sum(_best(n, memo)[0] for n in inner)
            if best is None or cost < best[0]:
                best = (cost, w)
        memo[id(node)] = best
    return memo[id(node)]


def _tables(root: _Node) -> tuple[list[tuple], int, int]:
    """Entries ``("sym", symbol, bits)`` / ``("link", target, width)``,
    the first width, and the most bits any look-up path reads beyond a
    code word (stream padding)."""
    memo: dict = {}
    entries: list = []
    overrun = 0

    def emit(node: _Node, width: int) -> int:
        nonlocal overrun
        start = len(entries)
        entries.extend([None] * (1 << width))
        links = []
        for prefix, n, d in _level(node, width):
            base = prefix << (width - d)
            if n.symbol is not None:
                entries[start + base:start + base + (1 << (width - d))] = \
                    [("sym", n.symbol, d)] * (1 << (width - d))
                overrun = max(overrun, width - d)
            else:
                links.append((start + base, n))
        for pos, n in links:
            sub = _best(n, memo)[1]
            entries[pos] = ("link", emit(n, sub), sub)
        return start

    first = _best(root, memo)[1]
    emit(root, first)
    return entries, first, overrun


def _pack_table(entries: list, values: np.ndarray, wide: bool) -> bytes:
    shift, found = (27, 0x80000000) if wide else (11, 0x8000)
    mask = (1 << shift) - 1
    words = []
    for pos, (kind, a, b) in enumerate(entries):
        if kind == "sym":
            words.append(found | b << shift | (int(values[a]) & mask
                                               & (0xFFFF if wide else 0xFF)))
        else:
            words.append((b - 1) << shift | (a - pos))
    return np.asarray(words, "<u4" if wide else "<u2").tobytes()


def _stream(index: np.ndarray, codes: np.ndarray, lengths: np.ndarray,
            pad_bits: int) -> tuple[bytes, int]:
    """The code words of ``index`` (symbol numbers), MSB first, padded to
    whole 32-bit words with ``pad_bits`` to spare."""
    width = int(lengths.max())
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64)
    parts = []
    for start in range(0, index.size, 1 << 16):
        k = index[start:start + (1 << 16)]
        lens = lengths[k]
        # left-align each code word in ``width`` bits, keep its ``lens`` bits
        aligned = codes[k] << (width - lens).astype(np.uint64)
        bits = (aligned[:, None] >> shifts) & np.uint64(1)
        parts.append(bits[np.arange(width)[None, :] < lens[:, None]])
    stream = np.concatenate(parts).astype(np.uint8)
    total = int(stream.size)
    words = -(-(total + pad_bits) // 32)
    stream = np.concatenate([stream, np.zeros(words * 32 - total, np.uint8)])
    return np.packbits(stream, bitorder="big").tobytes(), total


def encode(array: np.ndarray) -> Encoded:
    """HUFFMAN-encode an int8 or int16 constant tensor.

    Raises:
        EncodingError: another type, or an int16 tensor with more than 4096
            distinct values.
    """
    array = np.asarray(array)
    if array.dtype not in (np.int8, np.int16):
        raise EncodingError(f"HUFFMAN: the kernel decodes int8 and int16 "
                            f"tensors only, not {array.dtype}")
    if array.size < 2:
        raise EncodingError("HUFFMAN: the tensor has fewer than 2 elements")
    values, index, counts = np.unique(array.ravel(), return_inverse=True,
                                      return_counts=True)
    if len(values) > _MAX_SYMBOLS:
        raise EncodingError(f"HUFFMAN: {len(values)} distinct values "
                            f"(> {_MAX_SYMBOLS})")
    lengths = _code_lengths(counts)
    if lengths.max() > 63:
        raise EncodingError("HUFFMAN: a code word longer than 63 bits")
    codes = _canonical(lengths)
    if len(values) == 1:      # one code word "0"; "1" never occurs
        entries, first, overrun = [("sym", 0, 1)] * 2, 1, 0
    else:
        entries, first, overrun = _tables(_trie(codes, lengths))
    wide = array.dtype == np.int16 or any(
        kind == "link" and a - pos > _OFFSET_16
        for pos, (kind, a, _) in enumerate(entries))
    data, bits = _stream(index.ravel(), codes, lengths, overrun)
    head = dcm(DecodeType.HUFFMAN, bytes([_VERSION, (first - 1) << 4 | wide]))
    return Encoded("huffman", data, head + _pack_table(entries, values, wide), {
        "symbols": int(len(values)), "table_entries": len(entries),
        "table_bits": 32 if wide else 16, "first_table_bits": first,
        "stream_bits": bits,
        "bits_per_value": round(bits / array.size, 3)})


def decode(enc: Encoded, shape: tuple[int, ...], dtype) -> np.ndarray:
    """The tensor as the TFLM kernel rebuilds it (reference for tests):
    the kernel's loop, including its put-back of unused bits."""
    head = enc.ancillary[:DCM_BYTES]
    wide = bool(head[5] & 1)
    first = (head[5] >> 4) + 1
    table = np.frombuffer(enc.ancillary[DCM_BYTES:], "<u4" if wide else "<u2")
    shift, found = (27, 1 << 31) if wide else (11, 1 << 15)
    stream = np.unpackbits(np.frombuffer(enc.data, np.uint8), bitorder="big")
    n = int(np.prod(shape)) if shape else 1
    out = np.zeros(n, np.int64)
    pos = 0
    for k in range(n):
        used, at = first, 0
        entry = 0
        offset = 0
        while True:
            if pos + used > stream.size:
                raise EncodingError("HUFFMAN: the stream ends inside a code")
            bits = int("".join(map(str, stream[pos:pos + used])) or "0", 2)
            pos += used
            at = at + offset + bits
            entry = int(table[at])
            if entry & found:
                break
            offset = entry & ((1 << shift) - 1)
            used = ((entry >> shift) & 0xF) + 1
        pos -= used - ((entry >> shift) & 0xF)
        out[k] = entry & (0xFFFF if wide else 0xFF)
    return out.astype(np.uint16 if np.dtype(dtype) == np.int16 else np.uint8
                      ).view(dtype).reshape(shape)

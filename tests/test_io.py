"""Image reading, validation and writing (microseg.io)."""

from __future__ import annotations

import io
import json
import struct
import uuid
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from microseg.errors import InputError
from microseg.io import (
    MIN_SIDE,
    auto_range,
    image_stem,
    label_dtype,
    read_image,
    read_provenance,
    supported_suffixes,
    to_display_uint8,
    write_ome_tiff,
    write_png,
    write_tiff,
)

RNG = np.random.default_rng(7)


def _u16(shape):
    return RNG.integers(0, 65535, shape, dtype=np.uint16)


def _u8(shape):
    return RNG.integers(0, 255, shape, dtype=np.uint8)


def _png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` grey pixels but holds almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + _chunk(b"IEND", b"")
    )


# --- a minimal ZISRAW (CZI) writer: czifile only reads, so tests build files by hand ---


def _segment(sid: str, data: bytes) -> bytes:
    return struct.pack("<16sqq", sid.encode().ljust(16, b"\0"), len(data), len(data)) + data


def _dv_entry(pixel_type: int, position: int, dims: list[tuple[str, int, int]]) -> bytes:
    out = struct.pack("<2siqiiBB4si", b"DV", pixel_type, position, 0, 0, 0, 0, b"\0" * 4, len(dims))
    for name, start, size in reversed(dims):  # stored X first
        out += struct.pack("<4siifi", name.encode().ljust(4, b"\0"), start, size, 0.0, size)
    return out


def write_czi(path, blocks, axes: str, xml: str = "", pixel_type: int = 1) -> None:
    """Write subblocks ``[(starts, array)]`` whose leading axes are ``axes`` (C order).

    Pixel types: 0 Gray8, 1 Gray16, 3 Bgr24 (arrays then end in a sample axis of 3).
    """
    pos = 32 + 512
    body, entries = b"", []
    for starts, arr in blocks:
        dims = [(a, starts.get(a, 0), n) for a, n in zip(axes, arr.shape[: len(axes)], strict=True)]
        raw = np.ascontiguousarray(arr).tobytes()
        entry = _dv_entry(pixel_type, pos, dims)
        seg = _segment(
            "ZISRAWSUBBLOCK",
            struct.pack("<iiq", 0, 0, len(raw)) + entry + b"\0" * max(240 - len(entry), 0) + raw,
        )
        entries.append(entry)
        body += seg
        pos += len(seg)
    directory = _segment(
        "ZISRAWDIRECTORY", struct.pack("<i", len(entries)) + b"\0" * 124 + b"".join(entries)
    )
    xb = xml.encode()
    metadata = _segment("ZISRAWMETADATA", struct.pack("<ii", len(xb), 0) + b"\0" * 248 + xb)
    guid = uuid.uuid4().bytes
    head = struct.pack(
        "<iiii16s16siqqiq", 1, 0, 0, 0, guid, guid, 0, pos, pos + len(directory), 0, 0
    )
    with open(path, "wb") as fh:
        fh.write(_segment("ZISRAWFILE", head.ljust(512, b"\0")) + body + directory + metadata)


CZI_XML = (
    "<ImageDocument><Metadata><Scaling><Items>"
    '<Distance Id="X"><Value>1.5E-07</Value></Distance>'
    '<Distance Id="Y"><Value>1.5E-07</Value></Distance>'
    '<Distance Id="Z"><Value>1E-06</Value></Distance>'
    "</Items></Scaling><Information><Image><Dimensions><Channels>"
    '<Channel Id="Channel:0" Name="DAPI"/><Channel Id="Channel:1" Name="GFP"/>'
    "</Channels></Dimensions></Image></Information></Metadata></ImageDocument>"
)


# ----------------------------------------------------------------------------- PNG / JPEG


def test_png_grey_8_and_16_bit(tmp_path):
    a8, a16 = _u8((20, 30)), _u16((20, 30))
    Image.fromarray(a8).save(tmp_path / "g8.png")
    Image.fromarray(a16).save(tmp_path / "g16.png")
    im8 = read_image(tmp_path / "g8.png")
    im16 = read_image(str(tmp_path / "g16.png"))
    assert im8.data.shape == (1, 1, 1, 20, 30) and im8.dtype == np.uint8
    assert np.array_equal(im8.data[0, 0, 0], a8)
    assert im16.dtype == np.uint16 and np.array_equal(im16.data[0, 0, 0], a16)
    assert im8.name == "g8.png" and im8.metadata["format"] == "PNG"
    assert im8.pixel_size_um is None and im8.metadata["pixel_size_source"] is None


def test_png_rgb_rgba_and_16_bit_colour(tmp_path):
    import imagecodecs

    rgb = _u8((16, 24, 3))
    rgba = np.concatenate([rgb, _u8((16, 24, 1))], axis=2)
    rgb16 = _u16((16, 24, 3))
    im = read_image(_png_bytes(rgb), "rgb.png")
    assert im.data.shape == (1, 1, 3, 16, 24)
    assert np.array_equal(np.moveaxis(im.data[0, 0], 0, -1), rgb)
    assert im.channel_names == ["red", "green", "blue"]
    im = read_image(_png_bytes(rgba), "rgba.png")
    assert im.data.shape == (1, 1, 3, 16, 24), "alpha must be dropped"
    assert np.array_equal(np.moveaxis(im.data[0, 0], 0, -1), rgb)
    im = read_image(imagecodecs.png_encode(rgb16), "rgb16.png")
    assert im.dtype == np.uint16, "16-bit colour PNG keeps its depth"
    assert np.array_equal(np.moveaxis(im.data[0, 0], 0, -1), rgb16)


def test_png_grey_alpha_and_palette(tmp_path):
    grey = _u8((16, 16))
    la = np.stack([grey, np.full_like(grey, 200)], axis=-1)
    im = read_image(_png_bytes(la, mode="LA"), "la.png")
    assert im.data.shape == (1, 1, 1, 16, 16) and np.array_equal(im.data[0, 0, 0], grey)

    idx = (np.arange(256).reshape(16, 16) % 4).astype(np.uint8)
    pal = Image.fromarray(idx, mode="P")
    colours = [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]
    pal.putpalette(colours + [0] * (768 - len(colours)))
    buf = io.BytesIO()
    pal.save(buf, format="PNG")
    im = read_image(buf.getvalue(), "pal.png")
    assert im.data.shape == (1, 1, 3, 16, 16)
    lut = np.array(colours, np.uint8).reshape(4, 3)
    assert np.array_equal(np.moveaxis(im.data[0, 0], 0, -1), lut[idx])
    im = read_image(buf.getvalue(), "pal.png", palette="index")
    assert im.data.shape == (1, 1, 1, 16, 16) and np.array_equal(im.data[0, 0, 0], idx)


def test_jpeg_grey_and_rgb(tmp_path):
    yy, xx = np.mgrid[0:32, 0:40]
    smooth = (yy * 4 + xx * 2).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "g.jpg", quality=95)
    Image.fromarray(np.stack([smooth, 255 - smooth, smooth // 2], -1)).save(
        tmp_path / "c.jpeg", quality=95
    )
    g = read_image(tmp_path / "g.jpg")
    c = read_image(tmp_path / "c.jpeg")
    assert g.data.shape == (1, 1, 1, 32, 40) and g.metadata["format"] == "JPEG"
    assert np.abs(g.data[0, 0, 0].astype(int) - smooth).max() <= 4
    assert c.data.shape == (1, 1, 3, 32, 40)
    assert np.abs(c.data[0, 0, 1].astype(int) - (255 - smooth)).max() <= 8


# ----------------------------------------------------------------------------- TIFF


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.uint32, np.float32])
def test_tiff_dtypes_kept(tmp_path, dtype):
    a = (RNG.random((12, 10)) * 200).astype(dtype)
    tifffile.imwrite(tmp_path / "a.tif", a)
    im = read_image(tmp_path / "a.tif")
    assert im.dtype == dtype and np.array_equal(im.data[0, 0, 0], a)


def test_tiff_bool_becomes_uint8_and_float16_float32(tmp_path):
    b = RNG.random((12, 12)) > 0.5
    tifffile.imwrite(tmp_path / "b.tif", b)
    im = read_image(tmp_path / "b.tif")
    assert im.dtype == np.uint8 and np.array_equal(im.data[0, 0, 0], b.astype(np.uint8))
    tifffile.imwrite(tmp_path / "h.tif", np.full((10, 10), 0.5, np.float16))
    assert read_image(tmp_path / "h.tif").dtype == np.float32


def test_multipage_tiff_pages_become_time(tmp_path):
    pages = _u16((5, 16, 16))
    for p in pages:
        tifffile.imwrite(tmp_path / "mp.tif", p, append=True, metadata=None)
    im = read_image(tmp_path / "mp.tif")
    assert im.data.shape == (5, 1, 1, 16, 16)
    assert np.array_equal(im.data[:, 0, 0], pages)


def test_ome_tiff_axes_pixel_size_and_channels(tmp_path):
    stack = _u16((3, 4, 2, 16, 20))
    tifffile.imwrite(
        tmp_path / "s.ome.tif",
        stack,
        ome=True,
        photometric="minisblack",
        metadata={
            "axes": "TZCYX",
            "PhysicalSizeX": 325.0,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 325.0,
            "PhysicalSizeYUnit": "nm",
            "PhysicalSizeZ": 2.0,
            "Channel": {"Name": ["DAPI", "GFP"]},
        },
    )
    im = read_image(tmp_path / "s.ome.tif")
    assert im.data.shape == (3, 4, 2, 16, 20) and np.array_equal(im.data, stack)
    assert im.pixel_size_um == pytest.approx(0.325)
    assert im.metadata["pixel_size_source"] == "OME"
    assert im.metadata["format"] == "OME-TIFF"
    assert im.metadata["z_spacing_um"] == pytest.approx(2.0)
    assert im.channel_names == ["DAPI", "GFP"]


def test_ome_tiff_z_stack_reordered(tmp_path):
    stack = _u8((2, 5, 16, 16))  # C, Z, Y, X
    tifffile.imwrite(
        tmp_path / "z.ome.tif", stack, ome=True, photometric="minisblack", metadata={"axes": "CZYX"}
    )
    im = read_image(tmp_path / "z.ome.tif")
    assert im.data.shape == (1, 5, 2, 16, 16)
    assert np.array_equal(im.data[0, 3, 1], stack[1, 3])


def test_imagej_hyperstack_axes_and_calibration(tmp_path):
    stack = _u16((2, 3, 2, 16, 16))
    tifffile.imwrite(
        tmp_path / "ij.tif",
        stack,
        imagej=True,
        resolution=(1 / 0.2, 1 / 0.2),
        metadata={"axes": "TZCYX", "unit": "micron", "spacing": 1.5, "finterval": 30.0},
    )
    im = read_image(tmp_path / "ij.tif")
    assert im.data.shape == (2, 3, 2, 16, 16) and np.array_equal(im.data, stack)
    assert im.pixel_size_um == pytest.approx(0.2)
    assert im.metadata["pixel_size_source"] == "ImageJ"
    assert im.metadata["z_spacing_um"] == pytest.approx(1.5)
    assert im.metadata["frame_interval"] == pytest.approx(30.0)


def test_imagej_nanometre_unit(tmp_path):
    tifffile.imwrite(
        tmp_path / "nm.tif",
        _u8((16, 16)),
        imagej=True,
        resolution=(1 / 80.0, 1 / 80.0),
        metadata={"unit": "nm"},
    )
    assert read_image(tmp_path / "nm.tif").pixel_size_um == pytest.approx(0.08)


@pytest.mark.parametrize(
    ("res", "unit", "expected"),
    [
        (10000 / 0.25, "CENTIMETER", 0.25),
        (25400 / 0.5, "INCH", 0.5),
        (72, "INCH", None),  # an image editor's screen setting, not a calibration
        (1, "NONE", None),
    ],
)
def test_tiff_resolution_tags(tmp_path, res, unit, expected):
    tifffile.imwrite(tmp_path / "r.tif", _u8((16, 16)), resolution=(res, res), resolutionunit=unit)
    im = read_image(tmp_path / "r.tif")
    if expected is None:
        assert im.pixel_size_um is None and im.metadata["pixel_size_source"] is None
    else:
        assert im.pixel_size_um == pytest.approx(expected)
        assert im.metadata["pixel_size_source"] == "TIFF resolution"


def test_tiff_rgb_and_rgba(tmp_path):
    rgb = _u8((16, 18, 3))
    rgba = np.concatenate([rgb, np.full((16, 18, 1), 255, np.uint8)], axis=2)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb")
    for name in ("rgb.tif", "rgba.tif"):
        im = read_image(tmp_path / name)
        assert im.data.shape == (1, 1, 3, 16, 18), name
        assert np.array_equal(np.moveaxis(im.data[0, 0], 0, -1), rgb)
        assert im.channel_names == ["red", "green", "blue"]


def test_sources_bytes_filelike_and_name(tmp_path):
    a = _u16((16, 16))
    tifffile.imwrite(tmp_path / "x.tif", a)
    raw = (tmp_path / "x.tif").read_bytes()
    upload = io.BytesIO(raw)
    upload.name = "upload.tif"
    with open(tmp_path / "x.tif", "rb") as fh:
        from_handle = read_image(fh)
    for im in (read_image(raw, "given.tif"), read_image(upload), from_handle):
        assert np.array_equal(im.data[0, 0, 0], a)
    assert from_handle.name == "x.tif"
    assert read_image(raw, "given.tif").name == "given.tif"
    assert read_image(upload).name == "upload.tif"
    assert read_image(raw).name == "image"


def test_content_decides_not_suffix(tmp_path):
    (tmp_path / "really_png.tif").write_bytes(_png_bytes(_u8((16, 16))))
    assert read_image(tmp_path / "really_png.tif").metadata["format"] == "PNG"


# ----------------------------------------------------------------------------- CZI


def test_czi_channels_pixel_size_and_names(tmp_path):
    a = _u16((2, 3, 16, 20))  # C, Z, Y, X
    write_czi(tmp_path / "s.czi", [({"C": c}, a[c : c + 1]) for c in range(2)], "CZYX", xml=CZI_XML)
    im = read_image(tmp_path / "s.czi")
    assert im.data.shape == (1, 3, 2, 16, 20)
    assert np.array_equal(im.data[0, :, 1], a[1])
    assert im.pixel_size_um == pytest.approx(0.15)
    assert im.metadata["pixel_size_source"] == "CZI"
    assert im.metadata["z_spacing_um"] == pytest.approx(1.0)
    assert im.channel_names == ["DAPI", "GFP"]


def test_czi_bgr_colour_and_no_metadata(tmp_path):
    bgr = _u8((1, 16, 16, 3))
    write_czi(tmp_path / "c.czi", [({}, bgr)], "TYX", pixel_type=3)
    im = read_image((tmp_path / "c.czi").read_bytes(), "c.czi")
    assert im.data.shape == (1, 1, 3, 16, 16)
    assert np.array_equal(np.moveaxis(im.data[0, 0], 0, -1), bgr[0, ..., ::-1])
    assert im.pixel_size_um is None


def test_czi_truncated(tmp_path):
    a = _u16((1, 64, 64))
    write_czi(tmp_path / "t.czi", [({}, a)], "CYX", xml=CZI_XML)
    raw = (tmp_path / "t.czi").read_bytes()
    with pytest.raises(InputError, match="truncated"):
        read_image(raw[:2000], "t.czi")


# ----------------------------------------------------------------------------- bad inputs


def _one_sentence(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg.endswith(".") and "\n" not in msg and "Traceback" not in msg, msg
    assert msg.count(". ") == 0, f"more than one sentence: {msg}"
    return msg


def test_empty_file(tmp_path):
    (tmp_path / "e.tif").write_bytes(b"")
    with pytest.raises(InputError, match="empty") as exc:
        read_image(tmp_path / "e.tif")
    _one_sentence(exc)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_image(tmp_path / "nope.tif")


def test_truncated_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", _u16((3, 64, 64)), photometric="minisblack")
    raw = (tmp_path / "a.tif").read_bytes()
    for cut in (len(raw) // 2, 200, 5):
        with pytest.raises(InputError, match="truncated") as exc:
            read_image(raw[:cut], "a.tif")
        _one_sentence(exc)


def test_truncated_png_and_jpeg():
    png = _png_bytes(_u8((64, 64)))
    jpg = io.BytesIO()
    Image.fromarray(_u8((64, 64, 3))).save(jpg, format="JPEG")
    for raw, name in ((png, "a.png"), (jpg.getvalue(), "a.jpg")):
        for cut in (len(raw) // 2, 30):
            with pytest.raises(InputError, match="truncated") as exc:
                read_image(raw[:cut], name)
            _one_sentence(exc)


def test_corrupt_compressed_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "z.tif", _u16((64, 64)), compression="zlib")
    raw = bytearray((tmp_path / "z.tif").read_bytes())
    with tifffile.TiffFile(tmp_path / "z.tif") as tif:
        start = tif.pages[0].dataoffsets[0]
    raw[start + 2 : start + 40] = bytes(38)
    with pytest.raises(InputError, match="damaged") as exc:
        read_image(bytes(raw), "z.tif")
    _one_sentence(exc)


@pytest.mark.parametrize(
    ("content", "name", "match"),
    [
        (b"sample,area\n1,20\n" * 20, "table.csv", "not an image .*text"),
        (np.random.default_rng(1).bytes(3000), "noise.bin", "not an image"),
        (b"GIF89a" + bytes(200), "movie.gif", "GIF image, which microseg does not read"),
        (b"PK\x03\x04" + bytes(200), "data.zip", "ZIP archive"),
        (b"\x93NUMPY" + bytes(200), "arr.npy", "NumPy array"),
    ],
)
def test_not_an_image_or_unsupported(content, name, match):
    with pytest.raises(InputError, match=match) as exc:
        read_image(content, name)
    _one_sentence(exc)


def test_huge_png_header_rejected_before_decoding():
    with pytest.raises(InputError, match="limit") as exc:
        read_image(_png_header_only(100_000, 100_000), "bomb.png")
    _one_sentence(exc)
    with pytest.raises(InputError, match="over the limit of 1,000") as exc:
        read_image(_png_header_only(2000, 2000), "big.png", max_pixels=1000)
    _one_sentence(exc)


def test_huge_tiff_header_rejected_before_decoding(tmp_path):
    path = tmp_path / "huge.tif"
    tifffile.imwrite(path, _u8((16, 16)), metadata=None)
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(100_000)
        tif.pages[0].tags["ImageLength"].overwrite(100_000)
    with pytest.raises(InputError, match="10,000,000,000 values, over the limit") as exc:
        read_image(path)
    _one_sentence(exc)


def test_small_pixel_limit_on_stack(tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", _u8((4, 32, 32)), photometric="minisblack")
    with pytest.raises(InputError, match="4,096 values, over the limit of 4,000"):
        read_image(tmp_path / "s.tif", max_pixels=4000)
    assert read_image(tmp_path / "s.tif", max_pixels=4096).data.shape == (4, 1, 1, 32, 32)


@pytest.mark.parametrize("shape", [(1, 1), (1, 100), (MIN_SIDE - 1, 50)])
def test_too_small(tmp_path, shape):
    tifffile.imwrite(tmp_path / "t.tif", np.ones(shape, np.uint8))
    with pytest.raises(InputError, match="at least") as exc:
        read_image(tmp_path / "t.tif")
    _one_sentence(exc)
    smallest = read_image(_png_bytes(np.zeros((MIN_SIDE, MIN_SIDE), np.uint8)), "ok.png")
    assert smallest.shape_yx == (MIN_SIDE, MIN_SIDE)


def test_one_pixel_png_and_zero_size_tiff(tmp_path):
    with pytest.raises(InputError, match="1 x 1 pixels"):
        read_image(_png_bytes(np.zeros((1, 1), np.uint8)), "dot.png")
    with pytest.warns(UserWarning):
        tifffile.imwrite(tmp_path / "z.tif", np.zeros((0, 5), np.uint8))
    with pytest.raises(InputError, match="no pixels") as exc:
        read_image(tmp_path / "z.tif")
    _one_sentence(exc)


def test_too_many_axes(tmp_path):
    tifffile.imwrite(tmp_path / "six.tif", _u8((2, 2, 2, 2, 8, 8)), photometric="minisblack")
    with pytest.raises(InputError, match="6 non-singleton axes") as exc:
        read_image(tmp_path / "six.tif")
    _one_sentence(exc)
    tifffile.imwrite(
        tmp_path / "tzcayx.tif",
        _u8((2, 2, 2, 3, 8, 8)),
        photometric="minisblack",
        metadata={"axes": "TZCAYX"},
    )
    with pytest.raises(InputError, match="more than microseg supports"):
        read_image(tmp_path / "tzcayx.tif")
    # singleton extra axes are fine
    tifffile.imwrite(
        tmp_path / "ok.tif",
        _u8((1, 2, 1, 3, 8, 8)),
        photometric="minisblack",
        metadata={"axes": "TZCAYX"},
    )
    assert read_image(tmp_path / "ok.tif").data.shape == (3, 2, 1, 8, 8)


def test_complex_refused(tmp_path):
    tifffile.imwrite(tmp_path / "c.tif", np.ones((16, 16), np.complex64))
    with pytest.raises(InputError, match="complex") as exc:
        read_image(tmp_path / "c.tif")
    _one_sentence(exc)


def test_nan_and_inf(tmp_path):
    a = RNG.random((2, 16, 16)).astype(np.float32) + 1.0
    a[0, 0, :5] = np.nan
    a[1, 3, 3] = np.inf
    a[1, 4, 4] = -np.inf
    tifffile.imwrite(tmp_path / "n.tif", a, metadata={"axes": "CYX"}, photometric="minisblack")
    im = read_image(tmp_path / "n.tif")
    assert np.isfinite(im.data).all()
    assert im.metadata["nonfinite"] == 7
    finite0 = a[0][np.isfinite(a[0])]
    assert np.all(im.data[0, 0, 0, 0, :5] == finite0.min())
    assert im.data[0, 0, 1, 3, 3] == a[1][np.isfinite(a[1])].min()
    assert np.array_equal(im.data[0, 0, 0, 1:], a[0, 1:])

    tifffile.imwrite(tmp_path / "allnan.tif", np.full((16, 16), np.nan, np.float32))
    with pytest.raises(InputError, match="only NaN or infinite") as exc:
        read_image(tmp_path / "allnan.tif")
    _one_sentence(exc)


# ----------------------------------------------------------------------------- writers


def test_write_tiff_imagej_roundtrip_with_provenance(tmp_path):
    labels = RNG.integers(0, 300, (3, 16, 20)).astype(np.uint16)
    path = write_tiff(
        tmp_path / "out" / "l.tif",
        labels,
        "TYX",
        pixel_size_um=0.4,
        metadata={"model_hash": "abc", "threshold": np.float32(0.5)},
    )
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and tif.series[0].axes == "TYX"
    im = read_image(path)
    assert np.array_equal(im.data[:, 0, 0], labels)
    assert im.pixel_size_um == pytest.approx(0.4)
    prov = read_provenance(path)
    assert prov["model_hash"] == "abc" and prov["threshold"] == 0.5
    assert "microseg_version" in prov


def test_write_tiff_reorders_axes_for_imagej(tmp_path):
    probs = RNG.random((16, 20, 3)).astype(np.float32)  # Y, X, C
    path = write_tiff(tmp_path / "p.tif", probs, "YXC")
    im = read_image(path)
    assert im.data.shape == (1, 1, 3, 16, 20)
    assert np.allclose(im.data[0, 0], np.moveaxis(probs, -1, 0))


def test_write_tiff_uint32_falls_back_to_plain_tiff(tmp_path):
    labels = np.zeros((16, 16), np.uint32)
    labels[4:8, 4:8] = 70_000
    path = write_tiff(tmp_path / "big.tif", labels, "YX", pixel_size_um=0.25, metadata={"n": 1})
    with tifffile.TiffFile(path) as tif:
        assert not tif.is_imagej
    im = read_image(path)
    assert im.dtype == np.uint32 and im.data.max() == 70_000
    assert im.pixel_size_um == pytest.approx(0.25)
    assert read_provenance(path)["n"] == 1


def test_write_ome_tiff_roundtrip(tmp_path):
    stack = _u16((2, 3, 16, 16))
    path = write_ome_tiff(
        tmp_path / "s.ome.tif", stack, "ZCYX", 0.11, {"a": [1, 2]}, channel_names=["x", "y", "z"]
    )
    im = read_image(path)
    assert im.data.shape == (1, 2, 3, 16, 16) and np.array_equal(im.data[0], stack)
    assert im.pixel_size_um == pytest.approx(0.11)
    assert im.channel_names == ["x", "y", "z"]
    assert read_provenance(path)["a"] == [1, 2]


def test_write_png(tmp_path):
    rgb = _u8((16, 16, 3))
    path = write_png(tmp_path / "o.png", rgb, {"k": "v"})
    assert np.array_equal(np.asarray(Image.open(path)), rgb)
    assert read_provenance(path)["k"] == "v"
    mask = np.zeros((16, 16), bool)
    mask[2:5] = True
    assert np.asarray(Image.open(write_png(tmp_path / "m.png", mask))).max() == 255
    with pytest.raises(ValueError, match="write_png"):
        write_png(tmp_path / "f.png", np.zeros((4, 4), np.float32))


def test_read_provenance_absent(tmp_path):
    tifffile.imwrite(tmp_path / "x.tif", _u8((8, 8)))
    assert read_provenance(tmp_path / "x.tif") is None


def test_label_dtype():
    assert label_dtype(0) == np.uint16
    assert label_dtype(65535) == np.uint16
    assert label_dtype(65536) == np.uint32
    with pytest.raises(ValueError):
        label_dtype(-1)


@pytest.mark.parametrize(
    ("path", "stem"),
    [
        ("a.ome.tif", "a"),
        ("b.tif", "b"),
        ("c.png", "c"),
        ("/data/d.OME.TIFF", "d"),
        ("e.czi", "e"),
        ("run.2024.01.tif", "run.2024.01"),
        ("noext", "noext"),
    ],
)
def test_image_stem(path, stem):
    assert image_stem(path) == stem


def test_output_stems_are_unique_per_input(tmp_path):
    from microseg.io import output_stems

    a, b = tmp_path / "a" / "img.tif", tmp_path / "b" / "img.ome.tif"
    assert output_stems([a, tmp_path / "other.png"]) == ["img", "other"]  # unique: unchanged
    assert output_stems([a, b]) == ["a_img", "b_img"]
    # a name still taken after the folder prefix, and the same file given twice
    assert output_stems([a, a, tmp_path / "a_img.tif"]) == ["a_img", "a_img_2", "a_img_3"]
    paths = [tmp_path / d / "x.tif" for d in ("p", "q", "p")] + [tmp_path / "x" / "y.tif"]
    stems = output_stems(paths)
    assert len(set(stems)) == len(stems) == 4 and stems[-1] == "y"


def test_supported_suffixes():
    sfx = supported_suffixes()
    for s in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".czi"):
        assert s in sfx


# ----------------------------------------------------------------------------- display


def test_to_display_uint8_auto_and_manual():
    ramp = np.linspace(0, 1000, 100 * 100, dtype=np.float32).reshape(100, 100)
    out = to_display_uint8(ramp, low_pct=0, high_pct=100)
    assert out.dtype == np.uint8 and out.shape == (100, 100)
    assert out[0, 0] == 0 and out[-1, -1] == 255 and out[50, 0] in (127, 128)
    out = to_display_uint8(ramp, manual=(0, 500))
    assert out[0, 0] == 0 and out[49, 99] <= 255 and (out[60:] == 255).all()
    lo, hi = auto_range(ramp, 1, 99)
    assert lo == pytest.approx(10, abs=1) and hi == pytest.approx(990, abs=1)


def test_to_display_uint8_channels():
    a = np.zeros((5, 8, 8), np.uint16)
    for c in range(5):
        a[c, :, c + 1 :] = 100 * (c + 1)
    rgb = to_display_uint8(a[:3], low_pct=0, high_pct=100)
    assert rgb.shape == (8, 8, 3) and rgb[0, 7].tolist() == [255, 255, 255]
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[0, 2].tolist() == [255, 255, 0]
    two = to_display_uint8(a[:2], low_pct=0, high_pct=100)
    assert two.shape == (8, 8, 3)
    assert two[0, 1].tolist() == [255, 0, 255] and two[0, 2].tolist() == [255, 255, 255]
    one = to_display_uint8(a, channels=[4], manual=(0, 500))
    assert one.shape == (8, 8) and one[0, 7] == 255 and one[0, 0] == 0
    sel = to_display_uint8(a, channels=[0, 3, 4], manual=[(0, 100), (0, 400), (0, 1000)])
    assert sel[0, 7].tolist() == [255, 255, 128]


def test_to_display_uint8_constant_and_nan():
    const = np.full((8, 8), 7, np.uint8)
    assert to_display_uint8(const).max() == 0
    f = np.ones((8, 8), np.float32)
    f[0, 0] = np.nan
    f[1, 1] = 3
    out = to_display_uint8(f, low_pct=0, high_pct=100)
    assert out[0, 0] == 0 and out[1, 1] == 255


# ----------------------------------------------------------------------------- real data


def test_real_files(shared_data):
    steel = read_image(shared_data / "grains" / "nist_steel" / "steel_original.tif")
    assert steel.data.shape == (1, 1, 1, 600, 800) and steel.dtype == np.uint8
    dsb = read_image(shared_data / "nuclei" / "dsb_sample" / "image.tif")
    assert dsb.data.shape == (1, 1, 1, 512, 512) and dsb.dtype == np.uint16
    gowt1 = read_image(shared_data / "timelapse" / "ctc_gowt1_01" / "01" / "t021.tif")
    assert gowt1.shape_yx == (1024, 1024)
    # The Cell Tracking Challenge states 0.240 um per pixel for Fluo-N2DH-GOWT1.
    assert gowt1.pixel_size_um == pytest.approx(0.240, abs=0.002)
    assert gowt1.metadata["pixel_size_source"] == "TIFF resolution"
    series = read_image(
        shared_data / "timelapse" / "cancer_cell_migration" / "cancer_cell_migration_crop.tif"
    )
    assert series.data.shape == (48, 1, 1, 130, 130)


def test_provenance_json_is_plain_json(tmp_path):
    path = write_tiff(tmp_path / "x.tif", _u8((8, 8)), "YX", metadata={"p": np.arange(3)})
    with tifffile.TiffFile(path) as tif:
        info = tif.imagej_metadata["Info"]
    assert json.loads(info)["p"] == [0, 1, 2]


FEI_HEADER = (
    "[User]\r\nDate=01/02/2024\r\n[Beam]\r\nHV=15000\r\n[Scan]\r\nPixelWidth={w}\r\n"
    "PixelHeight={h}\r\nHorFieldsize=5.33333e-006\r\n"
)


@pytest.mark.parametrize(
    ("width", "height", "expected", "expected_y"),
    [("5.20833e-009", "5.20833e-009", 0.00520833, None), ("1e-7", "2e-7", 0.1, 0.2)],
)
def test_fei_sem_pixel_size(tmp_path, width, height, expected, expected_y):
    path = tmp_path / "fei.tif"
    img = np.random.default_rng(0).integers(0, 255, (60, 80), dtype=np.uint8)
    # FEI writes 72 dpi resolution tags as well: the SEM header wins over them
    tifffile.imwrite(path, img, resolution=(72, 72),
                     extratags=[(34682, "s", 0, FEI_HEADER.format(w=width, h=height), True)])  # fmt: skip
    im = read_image(path)
    assert im.pixel_size_um == pytest.approx(expected)
    assert im.metadata["pixel_size_source"] == "FEI SEM"
    assert im.metadata.get("pixel_size_y_um") == (pytest.approx(expected_y) if expected_y else None)


@pytest.mark.parametrize(("text", "expected"), [("2.083 nm", 0.002083), ("1.5 µm", 1.5)])
def test_zeiss_sem_pixel_size(tmp_path, text, expected):
    path = tmp_path / "zeiss.tif"
    header = f"0\r\n1\r\nAP_PIXEL_SIZE\r\nPixel Size = {text}\r\nAP_WD\r\nWD = 8.5 mm\r\n"
    img = np.zeros((60, 80), np.uint8)
    tifffile.imwrite(path, img, extratags=[(34118, "s", 0, header.encode("latin-1"), True)])
    im = read_image(path)
    assert im.pixel_size_um == pytest.approx(expected)
    assert im.metadata["pixel_size_source"] == "Zeiss SEM"


def test_sem_header_without_a_usable_pixel_size(tmp_path):
    path = tmp_path / "fei.tif"
    tifffile.imwrite(path, np.zeros((60, 80), np.uint8),
                     extratags=[(34682, "s", 0, FEI_HEADER.format(w="0", h="nan"), True)])  # fmt: skip
    im = read_image(path)
    assert im.pixel_size_um is None and im.metadata["pixel_size_source"] is None


def test_an_image_larger_than_free_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    import microseg.io as mio

    path = tmp_path / "big.tif"
    tifffile.imwrite(path, np.zeros((512, 512), np.uint8))
    monkeypatch.setattr(mio, "available_memory", lambda: 512 * 512 * 2)  # half of what it needs
    with pytest.raises(InputError) as err:
        mio.read_image(path)
    msg = str(err.value)
    assert "262,144 values" in msg and "GB free" in msg
    monkeypatch.setattr(mio, "available_memory", lambda: None)  # unknown: no refusal
    assert mio.read_image(path).shape_yx == (512, 512)

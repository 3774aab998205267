"""Safe image and mask reading, RGB conversion and resizing, shared by index, preprocess and predict.

Every reader raises `ImageReadError` naming the file, whatever Pillow raised underneath
(truncated data, bad CRC, not an image, decompression bomb...), so a stage can report
the file and the problem in plain words.

Bounded decoding: every reader first reads the header alone (`read_header`: Pillow opens
lazily) and refuses an image whose width x height exceeds a pixel limit, before any
decoder (Pillow or OpenCV) allocates its pixels. MAX_PIXELS is the one default.

Orientation: the data stages keep the stored orientation (EXIF is ignored, as Pillow and
OpenCV's IMREAD_UNCHANGED do), since that is what the masks were drawn on; `load_upright_rgb`,
for predict, applies the EXIF orientation.

Dolos masks: 0 = fake (inpainted), 255 = real, stored as RGB or L PNGs. As in Dolos'
own loader, a pixel is fake where channel 0 is not 255; inside the pipeline 1 = fake.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

import cv2
import numpy as np
from PIL import Image, ImageOps

from localize.config import short

# Files with other suffixes in a data folder are reported and ignored, never decoded.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")

# What Pillow raises on broken files; caught only around the decode calls below.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,  # Pillow's PNG plugin raises it for broken chunks
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
)

_GREY16 = ("I;16", "I;16L", "I;16B", "I;16N")
T = TypeVar("T")

# The default pixel limit (width x height) of every reader: 64 Mpx, e.g. 8000 x 8000, more than
# a 50-megapixel phone photo. A decoded 64 Mpx RGB image takes 192 MB; a mask 64 MB.
MAX_PIXELS = 64_000_000
# A file may be at most this many bytes per declared pixel, plus FILE_SLACK for metadata (ICC
# profiles, EXIF thumbnails): an uncompressed 16-bit RGBA image takes 8, a float RGBA TIFF 16.
# Anything more is data after the image, refused before it is read (index.max_file_bytes_per_pixel).
MAX_FILE_BYTES_PER_PIXEL = 16
MAX_BYTES_PER_PIXEL_LIMIT = 1024
FILE_SLACK = 1 << 20
_HEAD_BYTES = 1 << 16
# Pillow refuses images above twice its own MAX_IMAGE_PIXELS (a decompression bomb) whatever
# limit is asked for here, so a pixel limit cannot usefully be set higher than this.
PILLOW_MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS
# Below that, Pillow only warns; the limit checked by read_header decides instead.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageReadError(ValueError):
    """A file could not be read as an image; `path` and `problem` say which and why."""

    def __init__(self, path: str | Path, problem: str) -> None:
        # Both kept in args so the exception survives pickling back from a worker process.
        super().__init__(str(path), problem)
        self.path = str(path)
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class ImageTooLargeError(ImageReadError):
    """The header declares more pixels than the limit: refused before any decode."""


class ImageSizeError(ImageReadError):
    """The header's size is not the one the caller expected (`size`, `expected`: width, height)."""

    def __init__(self, path: str | Path, size: tuple[int, int], expected: tuple[int, int]) -> None:
        super().__init__(path, f"is {size[0]}x{size[1]}, expected {expected[0]}x{expected[1]}")
        self.args = (str(path), size, expected)
        self.size, self.expected = size, expected


def check_max_pixels(value: int, name: str) -> None:
    """Raise ValueError unless `value` is a usable pixel limit; `name` is the param or option that set it."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= PILLOW_MAX_PIXELS:
        raise ValueError(f"{name} = {value!r}: must be a whole number of pixels between 1 and "
                         f"{PILLOW_MAX_PIXELS:,} (Pillow refuses larger images)")


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _describe(e: BaseException, data: bytes) -> str:
    """Pillow's message in plain words (half-downloaded and half-unzipped files are the usual cause)."""
    text = str(e) or type(e).__name__
    low = text.lower()
    if "truncated" in low or isinstance(e, EOFError):
        return f"truncated file, e.g. an incomplete download or unzip ({text})"
    if "checksum" in low or "broken" in low or "crc" in low:
        return f"damaged file: its data fails the format's checks ({text})"
    if isinstance(e, Image.UnidentifiedImageError):
        return "empty file (0 bytes)" if not data else "not an image file, or its header is damaged"
    return f"cannot be read as an image ({text})"


def check_max_file_bytes_per_pixel(value: int, name: str) -> None:
    """Raise ValueError unless `value` is a usable file-size limit; `name` is the param or option that set it."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BYTES_PER_PIXEL_LIMIT:
        raise ValueError(f"{name} = {short(value)}: must be a whole number of bytes per pixel between 1 and "
                         f"{MAX_BYTES_PER_PIXEL_LIMIT}")


def file_byte_limit(width: int, height: int, max_file_bytes_per_pixel: int = MAX_FILE_BYTES_PER_PIXEL) -> int:
    """The largest file that an image of this size may be: its pixels at the limit, plus room for metadata."""
    return FILE_SLACK + width * height * max_file_bytes_per_pixel


def _read(path: str | Path, max_pixels: int = MAX_PIXELS, expected: tuple[int, int] | None = None,
          max_file_bytes_per_pixel: int = MAX_FILE_BYTES_PER_PIXEL) -> bytes:
    """The file's bytes, read once (every check and decode below works from them), after its header.

    Bounded: the header is read first (`read_header`: the pixel limit and `expected`), then the
    file's size is held against what those pixels could take (`file_byte_limit`), so that a small
    image followed by gigabytes of anything is refused before a byte of the tail is read.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(_HEAD_BYTES)
            if head.startswith(_PNG_SIGNATURE) or len(head) == size:
                width, height = read_header(path, head, max_pixels, expected)
            else:  # Pillow opens the file lazily: it reads the header, wherever the format puts it
                f.seek(0)
                width, height = read_header(path, f, max_pixels, expected, head)
            limit = file_byte_limit(width, height, max_file_bytes_per_pixel)
            if size > limit:
                per_pixel = max_file_bytes_per_pixel
                raise ImageTooLargeError(path, f"file is {size:,} bytes, far more than its {width}x{height} pixels "
                                           f"need (at most {limit:,}: max_file_bytes_per_pixel {per_pixel} plus "
                                           "1 MiB of metadata); data appended after the image? refused unread")
            f.seek(0)
            return f.read()
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a folder, not an image file") from None
    except OSError as e:
        raise ImageReadError(path, f"cannot be read ({e.strerror or e})") from None


def _pillow(path: str | Path, data: bytes, convert: Callable[[Image.Image], T]) -> T:
    """Decode `data` fully with Pillow and apply `convert`; failures become ImageReadError naming `path`."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return convert(img)
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(path, f"image too large to decode safely ({e})") from None
    except _DECODE_ERRORS as e:
        raise ImageReadError(path, _describe(e, data)) from None


def read_header(path: str | Path, data: bytes | BinaryIO, max_pixels: int,
                expected: tuple[int, int] | None = None, head: bytes | None = None) -> tuple[int, int]:
    """(width, height) from the header alone, refused above `max_pixels` or unlike `expected`.

    The one size check of every reader, made before any decoder allocates the pixels:
    Pillow's open is lazy, it reads the header and leaves the pixel data alone. A PNG's
    size is read from its IHDR chunk directly, so that it is known even above Pillow's
    own limit (Pillow's open refuses those without saying the size). `data` may be an open
    file instead of bytes (`head`: its first bytes, for the messages).
    """
    is_bytes = isinstance(data, bytes)
    if is_bytes and data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack_from(">II", data, 16)
    else:
        try:
            with Image.open(io.BytesIO(data) if is_bytes else data) as img:
                width, height = img.size
        except Image.DecompressionBombError as e:  # Pillow's own limit, checked when it opens the header
            raise ImageTooLargeError(path, f"image too large to decode safely ({e})") from None
        except _DECODE_ERRORS as e:
            raise ImageReadError(path, _describe(e, data if is_bytes else (head or b""))) from None
    if expected is not None and (width, height) != tuple(expected):
        raise ImageSizeError(path, (width, height), expected)
    if width * height > max_pixels:
        raise ImageTooLargeError(path, f"image too large to decode safely ({width}x{height} = "
                                       f"{width * height:,} pixels; the limit is {max_pixels:,})")
    return width, height


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    mode: str  # Pillow mode as stored: "RGB", "L", "P", "RGBA", ...
    format: str | None
    transparency: bool  # a transparent colour (tRNS) even though the mode has no alpha

    @property
    def is_rgb(self) -> bool:
        """Plain 8-bit RGB, used as is; anything else is converted by `to_rgb`."""
        return self.mode == "RGB" and not self.transparency


# PNG (colour type, bit depth) -> the mode Pillow opens it in.
_PNG_MODES = {
    (0, 1): "1", (0, 2): "L", (0, 4): "L", (0, 8): "L", (0, 16): "I;16",
    (2, 8): "RGB", (2, 16): "RGB",
    (3, 1): "P", (3, 2): "P", (3, 4): "P", (3, 8): "P",
    (4, 8): "LA", (4, 16): "LA",
    (6, 8): "RGBA", (6, 16): "RGBA",
}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path: str | Path, data: bytes) -> ImageInfo:
    """Walk every chunk of a PNG and check its CRC, as Pillow's verify() does, at a third of its cost.

    Catches truncated files (a chunk cut short, no IEND) and damaged ones (a CRC
    mismatch), and reads size and mode from IHDR, without inflating the pixels.
    """
    view, pos, end = memoryview(data), len(_PNG_SIGNATURE), len(data)
    header: tuple[int, int, int, int] | None = None
    transparency = has_pixels = False
    while True:
        if pos + 12 > end:
            raise ImageReadError(path, "truncated file, e.g. an incomplete download or unzip (no IEND chunk)")
        length, kind = struct.unpack_from(">I4s", data, pos)
        name = kind.decode("latin-1")
        if pos + 12 + length > end:
            raise ImageReadError(path, f"truncated file, e.g. an incomplete download or unzip "
                                       f"(chunk {name} cut short)")
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        if zlib.crc32(view[pos + 4 : pos + 8 + length]) != crc:
            raise ImageReadError(path, f"damaged file: chunk {name} fails its CRC check")
        if header is None:
            if kind != b"IHDR" or length != 13:
                raise ImageReadError(path, "damaged file: the PNG does not start with its IHDR header")
            header = struct.unpack_from(">IIBB", data, pos + 8)
        elif kind == b"tRNS":
            transparency = True
        elif kind == b"IDAT":
            has_pixels = True
        elif kind == b"IEND":
            break
        pos += 12 + length
    width, height, depth, colour = header
    if not has_pixels:
        raise ImageReadError(path, "damaged file: no image data (IDAT chunk)")
    mode = _PNG_MODES.get((colour, depth))
    if mode is None:
        raise ImageReadError(path, f"damaged file: invalid PNG colour type {colour} / bit depth {depth}")
    return ImageInfo(width, height, mode, "PNG", transparency)


def check_image(path: str | Path, max_pixels: int = MAX_PIXELS,
                max_file_bytes_per_pixel: int = MAX_FILE_BYTES_PER_PIXEL) -> ImageInfo:
    """Cheap but real check: header, size, mode, and data integrity without a full decode.

    The header's size is checked against `max_pixels` first. PNGs get every chunk's CRC
    checked (see _check_png), which catches truncated and corrupted files at a fraction
    of a decode's cost. Other formats have no such check, so Pillow decodes them in full.
    """
    data = _read(path, max_pixels, None, max_file_bytes_per_pixel)
    if data.startswith(_PNG_SIGNATURE):
        info = _check_png(path, data)
    else:
        def header(img: Image.Image) -> ImageInfo:
            return ImageInfo(img.width, img.height, img.mode, img.format, "transparency" in img.info)

        info = _pillow(path, data, header)
    if info.width < 1 or info.height < 1:
        raise ImageReadError(path, f"empty image ({info.width}x{info.height})")
    return info


def needs_conversion(img: Image.Image) -> bool:
    """True unless the image is plain 8-bit RGB without a transparent colour."""
    return img.mode != "RGB" or "transparency" in img.info


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; transparent parts are composited on white.

    Palette and grey images with a transparent colour, RGBA, LA and PA all go through
    RGBA first, so a transparent background becomes white, never black.
    """
    if not needs_conversion(img):
        return img
    if img.mode in _GREY16:
        # Pillow's own conversion clips 16-bit grey at 255; scale it down instead.
        grey = (np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _cv2_png(data: bytes) -> np.ndarray | None:
    """Decode an 8-bit PNG with OpenCV, which writes straight into a numpy array (BGR order).

    That skips Pillow's internal 4-byte pixel format and the copy out of it, about 12%
    of a 256 px RGB decode: it matters when 36k files are decoded. libpng checks the
    CRCs of the header and pixel data on the way. Returns None, meaning "use Pillow", for anything else (other
    formats, 16-bit, damaged files); Pillow then also explains a failure in words.
    IMREAD_UNCHANGED applies no EXIF rotation and no colour conversion, as Pillow;
    palettes come back expanded, and a transparent colour adds an alpha channel.
    """
    if not data.startswith(_PNG_SIGNATURE):
        return None
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint8:
        return None
    return arr


def _strict_pillow(path: str | Path, data: bytes, convert: Callable[[Image.Image], T]) -> T:
    """The Pillow path, with the CRC checks Pillow's own PNG decode skips (libpng does them)."""
    if data.startswith(_PNG_SIGNATURE):
        _check_png(path, data)
    return _pillow(path, data, convert)


def load_rgb(path: str | Path, fast: bool = True, max_pixels: int = MAX_PIXELS,
             expected: tuple[int, int] | None = None,
             max_file_bytes_per_pixel: int = MAX_FILE_BYTES_PER_PIXEL) -> np.ndarray:
    """Decode an image fully and return it as uint8 H x W x 3 RGB (possibly read-only), in its stored
    orientation.

    The header is checked first (`read_header`: `max_pixels`, and the `expected` (width, height)
    if given). `fast` lets plain 3-channel PNGs go through OpenCV; the pixels are the same as Pillow's.
    """
    data = _read(path, max_pixels, expected, max_file_bytes_per_pixel)
    bgr = _cv2_png(data) if fast else None
    if bgr is not None and bgr.ndim == 3 and bgr.shape[2] == 3:
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return _strict_pillow(path, data, lambda img: np.asarray(to_rgb(img), dtype=np.uint8))


# EXIF Orientation values that turn or mirror the stored pixels (1 = as stored).
_EXIF_ORIENTATION = 0x0112
_ORIENTATIONS = {2: "mirrored", 3: "turned 180°", 4: "flipped upside down",
                 5: "mirrored and turned 90° anticlockwise", 6: "turned 90° clockwise",
                 7: "mirrored and turned 90° clockwise", 8: "turned 90° anticlockwise"}


def load_upright_rgb(path: str | Path, max_pixels: int = MAX_PIXELS,
                     max_file_bytes_per_pixel: int = MAX_FILE_BYTES_PER_PIXEL) -> tuple[np.ndarray, str | None]:
    """Like `load_rgb`, but upright as viewers show it: the EXIF orientation (phone photos) is applied.

    Returns (uint8 H x W x 3 RGB, what the orientation did, e.g. "turned 90° clockwise", or None).
    """
    data = _read(path, max_pixels, None, max_file_bytes_per_pixel)

    def upright(img: Image.Image) -> tuple[np.ndarray, str | None]:
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
        turn = _ORIENTATIONS.get(orientation) if isinstance(orientation, int) else None
        if turn is not None:
            img = ImageOps.exif_transpose(img)
        return np.asarray(to_rgb(img), dtype=np.uint8), turn

    return _strict_pillow(path, data, upright)


def mask_channel0(img: Image.Image) -> np.ndarray:
    """Channel 0 of a Dolos mask (R for RGB/RGBA, the grey value for L/LA) as uint8 H x W."""
    if img.mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(img.getchannel(0))  # one 8-bit plane: cheaper than the whole image
    if img.mode in _GREY16:
        return (np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8)
    if img.mode == "1":
        return np.asarray(img.convert("L"))
    # Palette and anything else: channel 0 of its RGB rendering (transparency ignored,
    # as Dolos' loader ignores it).
    return np.asarray(img.convert("RGB").getchannel(0))


def load_mask_channel0(path: str | Path, fast: bool = True, max_pixels: int = MAX_PIXELS,
                       expected: tuple[int, int] | None = None,
                       max_file_bytes_per_pixel: int = MAX_FILE_BYTES_PER_PIXEL) -> np.ndarray:
    """Decode a mask file fully and return its channel 0 as uint8 H x W (possibly read-only).

    The header is checked first, as in `load_rgb`: OpenCV has no pixel limit of its own.
    `fast` lets 8-bit PNGs (Dolos ships RGB and L) go through OpenCV, with the same result.
    """
    data = _read(path, max_pixels, expected, max_file_bytes_per_pixel)
    arr = _cv2_png(data) if fast else None
    if arr is not None and arr.ndim == 2:
        return arr
    if arr is not None and arr.ndim == 3 and arr.shape[2] in (3, 4):
        return np.ascontiguousarray(arr[:, :, 2])  # BGR(A): red is channel 2
    return _strict_pillow(path, data, mask_channel0)


def fake_from_channel0(channel0: np.ndarray) -> np.ndarray:
    """Dolos' rule: a pixel is fake where channel 0 is not 255. Returns bool, True = fake."""
    return channel0 != 255


def load_fake_mask(path: str | Path, fast: bool = True, max_pixels: int = MAX_PIXELS,
                   expected: tuple[int, int] | None = None,
                   max_file_bytes_per_pixel: int = MAX_FILE_BYTES_PER_PIXEL) -> np.ndarray:
    """Decode a Dolos mask and return it binarized: bool H x W, True = fake."""
    return fake_from_channel0(load_mask_channel0(path, fast, max_pixels, expected, max_file_bytes_per_pixel))


def resize_image(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an image (or a float map) for display or the model: area when shrinking, bilinear when growing.

    Area averaging is the right low-pass filter for downscaling; OpenCV's area mode
    degenerates to nearest-like blocks when enlarging, so bilinear is used there.
    """
    h, w = arr.shape[:2]
    if (h, w) == (height, width):
        return arr
    interp = cv2.INTER_AREA if height <= h and width <= w else cv2.INTER_LINEAR
    return cv2.resize(arr, (width, height), interpolation=interp)


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a label mask with nearest neighbour, so it stays binary; keeps the dtype.

    INTER_NEAREST_EXACT samples pixel centres (as Pillow does); plain INTER_NEAREST is
    shifted by half a pixel.
    """
    h, w = mask.shape[:2]
    if (h, w) == (height, width):
        return mask
    src = mask.astype(np.uint8) if mask.dtype == bool else mask
    out = cv2.resize(src, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
    return out.astype(bool) if mask.dtype == bool else out

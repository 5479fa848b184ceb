import numpy as np
import pytest
from PIL import Image

from diffbits.data import DIGITS_TRAIN, DataError, load_dataset


def test_digits_has_a_fixed_split():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert (len(train), len(test)) == (DIGITS_TRAIN, 1797 - DIGITS_TRAIN)
    assert train.shape == (1, 8, 8) and train.levels == 17
    assert int(train.x.max()) == 16 and int(train.x.min()) == 0


def test_npz_npy_shapes_levels_and_slices(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (10, 5, 6), dtype=np.uint8)
    np.savez(tmp_path / "one.npz", images=a)
    d = load_dataset(str(tmp_path / "one.npz"))
    assert d.shape == (1, 5, 6) and d.levels == 256 and len(d) == 10
    assert len(load_dataset(f"{tmp_path / 'one.npz'}[2:7]")) == 5
    np.testing.assert_array_equal(load_dataset(f"{tmp_path / 'one.npz'}[-3:]").x.numpy()[:, 0], a[-3:])
    np.save(tmp_path / "v.npy", np.arange(24).reshape(4, 6) % 5)
    v = load_dataset(str(tmp_path / "v.npy"))
    assert v.shape == (6,) and v.levels == 5
    assert load_dataset(str(tmp_path / "v.npy"), levels=9).levels == 9


def test_npz_with_several_arrays_needs_a_key(tmp_path):
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 3), np.uint8), b=np.ones((2, 3, 4, 4), np.uint8))
    with pytest.raises(DataError, match="choose one"):
        load_dataset(str(tmp_path / "two.npz"))
    assert load_dataset(f"{tmp_path / 'two.npz'}:b").shape == (3, 4, 4)
    with pytest.raises(DataError, match="no array 'c'"):
        load_dataset(f"{tmp_path / 'two.npz'}:c")


@pytest.mark.parametrize(
    "array, message",
    [
        (np.full((3, 4), 0.5), "floating-point"),
        (np.array([[1.0, np.nan]]), "NaN"),
        (np.array([[-1, 2]]), "outside"),
        (np.zeros((0, 4), np.int64), "empty"),
        (np.zeros((2, 2, 2, 2, 2), np.int64), "shape"),
    ],
)
def test_bad_arrays_are_clear_errors(tmp_path, array, message):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(DataError, match=message) as e:
        load_dataset(str(path))
    assert "bad.npy" in str(e.value)


def test_values_beyond_given_levels(tmp_path):
    np.save(tmp_path / "x.npy", np.array([[0, 7]]))
    with pytest.raises(DataError, match=r"outside \[0, 4\)"):
        load_dataset(str(tmp_path / "x.npy"), levels=4)


def test_image_folder_gray_and_rgb(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (6, 7), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    d = load_dataset(str(tmp_path))
    assert d.shape == (1, 6, 7) and d.levels == 256 and len(d) == 3
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    pixels = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(rgb / "a.png")
    d = load_dataset(str(rgb))
    assert d.shape == (3, 6, 7)
    np.testing.assert_array_equal(d.x[0].numpy().transpose(1, 2, 0), pixels)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no PNG or JPEG"):
        load_dataset(str(tmp_path))
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((5, 4), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(DataError, match="b.png.*all images must share one size"):
        load_dataset(str(tmp_path))
    (tmp_path / "b.png").unlink()
    (tmp_path / "c.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="c.png: unreadable image"):
        load_dataset(str(tmp_path))


def test_missing_and_unsupported_sources(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_dataset(str(tmp_path / "nope.npz"))
    (tmp_path / "a.csv").write_text("1,2")
    with pytest.raises(DataError, match="unsupported file type"):
        load_dataset(str(tmp_path / "a.csv"))


@pytest.mark.parametrize("content,message", [(b"x", "not a .npz file"), (b"PK\x03\x04broken", "damaged")])
def test_broken_files_are_named_for_what_they_are(tmp_path, content, message):
    """A damaged .npz gets a plain message, never numpy's advice to unpickle it."""
    (tmp_path / "d.npz").write_bytes(content)
    with pytest.raises(DataError, match=message) as e:
        load_dataset(str(tmp_path / "d.npz"))
    assert "allow_pickle" not in str(e.value)
    (tmp_path / "d.npy").write_bytes(content)
    with pytest.raises(DataError, match="not a .npy file"):
        load_dataset(str(tmp_path / "d.npy"))
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="Python objects") as e:
        load_dataset(str(tmp_path / "o.npy"))
    assert "allow_pickle" not in str(e.value)

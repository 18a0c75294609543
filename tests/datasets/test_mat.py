import sys

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
from numpy.testing import assert_array_equal

from skhash import MultiModal
from skhash.datasets import load_mirflickr, load_nuswide

N = 30


@pytest.fixture(scope="module")
def arrays():
    """Small stand-ins for the published variables, in MATLAB orientation."""
    rng = np.random.RandomState(0)
    L = (rng.uniform(size=(N, 5)) < 0.3).astype(np.uint8)
    L[np.arange(N), rng.randint(5, size=N)] = 1
    return {
        "LAll": L,
        "YAll": (rng.uniform(size=(N, 12)) < 0.2).astype(np.float64),
        "IAll": rng.randint(0, 256, (4, 4, 3, N)).astype(np.uint8),  # H x W x C x N
        "XAll": rng.rand(N, 8).astype(np.float32),
    }


def _pixels_as_rows(pixels):
    return np.moveaxis(pixels, -1, 0).reshape(pixels.shape[-1], -1)


def _write_single(path, arrays, *, image_key="images", features=False, **overrides):
    variables = {"LAll": arrays["LAll"], "YAll": arrays["YAll"]}
    variables[image_key] = arrays["IAll"]
    if features:
        variables["XAll"] = arrays["XAll"]
    variables.update(overrides)
    variables = {k: v for k, v in variables.items() if v is not None}
    scipy.io.savemat(path, variables)
    return path


def _write_folder(
    folder, arrays, *, prefix="mirflickr25k", subfolders=True, features=False
):
    files = {"LAll": "lall", "YAll": "yall", "IAll": "iall"}
    if features:
        files["XAll"] = "xall-vgg"
    for key, suffix in files.items():
        where = folder / key if subfolders else folder
        where.mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(where / f"{prefix}-{suffix}.mat", {key: arrays[key]})
    return folder


def _check_content(data, arrays, *, kind="pixels"):
    assert_array_equal(data.Y, arrays["LAll"])
    assert data.Y.dtype == np.int64
    assert_array_equal(data.X_txt, arrays["YAll"])
    assert data.X_txt.dtype == np.float32
    if kind == "pixels":
        assert_array_equal(data.X_img, _pixels_as_rows(arrays["IAll"]))
        assert data.image_shape == (4, 4, 3)
        # a row reshapes back to the image (height, width, channels)
        assert_array_equal(
            data.X_img[7].reshape(data.image_shape), arrays["IAll"][..., 7]
        )
    else:
        assert_array_equal(data.X_img, arrays["XAll"])
        assert data.image_shape is None
    assert data.image_kind == kind
    assert isinstance(data.X, MultiModal) and data.X.modalities == ("img", "txt")


@pytest.mark.parametrize("image_key", ["images", "IAll"])
def test_single_file_layout(tmp_path, arrays, image_key):
    path = _write_single(tmp_path / "FLICKR-25K.mat", arrays, image_key=image_key)
    data = load_mirflickr(path, n_query=5, n_train=10)
    assert data.layout == "dcmh"
    _check_content(data, arrays)
    assert data.files == {"LAll": str(path), "YAll": str(path), "IAll": str(path)}
    assert "DCMH" in data.DESCR


@pytest.mark.parametrize("subfolders", [True, False])
def test_one_file_per_variable_layout(tmp_path, arrays, subfolders):
    _write_folder(tmp_path, arrays, subfolders=subfolders)
    data = load_mirflickr(tmp_path, n_query=5, n_train=10)
    assert data.layout == "djsrh"
    _check_content(data, arrays)
    expected = tmp_path / "LAll" if subfolders else tmp_path
    assert data.files["LAll"] == str(expected / "mirflickr25k-lall.mat")


def test_nuswide_prefixes(tmp_path, arrays):
    _write_folder(tmp_path / "tc10", arrays, prefix="nus-wide-tc10", features=True)
    _write_folder(tmp_path / "tc21", arrays, prefix="nus-wide-tc21", subfolders=False)
    data = load_nuswide(tmp_path / "tc10", n_query=5, n_train=10)
    _check_content(data, arrays, kind="features")
    data = load_nuswide(tmp_path / "tc21", n_query=5, n_train=10)
    _check_content(data, arrays, kind="pixels")
    with pytest.raises(FileNotFoundError, match="nus-wide-tc10-lall.mat"):
        load_nuswide(tmp_path)


def test_both_layouts_read_the_same(tmp_path, arrays):
    single = _write_single(tmp_path / "FLICKR-25K.mat", arrays, features=True)
    folder = _write_folder(tmp_path / "folder", arrays, features=True)
    a = load_mirflickr(single, n_query=5, n_train=10, random_state=3)
    b = load_mirflickr(folder, n_query=5, n_train=10, random_state=3)
    for key in ("X_img", "X_txt", "Y", "query_idx", "database_idx", "train_idx"):
        assert_array_equal(a[key], b[key])


def test_image_choice(tmp_path, arrays):
    path = _write_single(tmp_path / "f.mat", arrays, features=True)
    kw = {"n_query": 5, "n_train": 10}
    _check_content(load_mirflickr(path, **kw), arrays, kind="features")  # auto
    _check_content(load_mirflickr(path, images="pixels", **kw), arrays)
    data = load_mirflickr(path, images="none", **kw)
    assert data.X_img is None and data.X.modalities == ("txt",)
    no_features = _write_single(tmp_path / "g.mat", arrays)
    with pytest.raises(ValueError, match=r"g\.mat has no variable 'XAll'"):
        load_mirflickr(no_features, images="features", **kw)
    folder = _write_folder(tmp_path / "folder", arrays)
    with pytest.raises(FileNotFoundError, match="mirflickr25k-xall-vgg.mat"):
        load_mirflickr(folder, images="features", **kw)


def test_default_split_is_seeded(tmp_path, arrays):
    path = _write_single(tmp_path / "f.mat", arrays)
    data = load_mirflickr(path, n_query=6, n_train=15, random_state=0)
    assert len(data.query_idx) == 6 and len(data.database_idx) == N - 6
    assert np.intersect1d(data.query_idx, data.database_idx).size == 0
    assert_array_equal(
        np.sort(np.concatenate([data.query_idx, data.database_idx])), np.arange(N)
    )
    assert_array_equal(data.train_idx, data.database_idx[:15])
    assert_array_equal(data.X_query["txt"], data.X_txt[data.query_idx])
    assert_array_equal(data.X_train["img"], data.X_img[data.train_idx])
    assert_array_equal(data.Y_database, data.Y[data.database_idx])
    again = load_mirflickr(path, n_query=6, n_train=15, random_state=0)
    other = load_mirflickr(path, n_query=6, n_train=15, random_state=1)
    assert_array_equal(again.query_idx, data.query_idx)
    assert not np.array_equal(other.query_idx, data.query_idx)
    everything = load_mirflickr(path, n_query=6, n_train=None)
    assert len(everything.train_idx) == N - 6
    with pytest.raises(ValueError, match="n_query=2000 leaves no database"):
        load_mirflickr(path)  # DCMH's 2,000 queries need the real data
    with pytest.raises(ValueError, match="n_train=40 exceeds the 24"):
        load_mirflickr(path, n_query=6, n_train=40)
    for bad in ({"n_query": True}, {"n_query": 6, "n_train": True}):
        with pytest.raises(ValueError, match="bool is not accepted"):
            load_mirflickr(path, **bad)


def test_sparse_text_is_kept_sparse(tmp_path, arrays):
    path = _write_single(tmp_path / "f.mat", arrays, YAll=sp.csc_matrix(arrays["YAll"]))
    data = load_mirflickr(path, n_query=5, n_train=10)
    assert sp.issparse(data.X_txt) and data.X_txt.format == "csr"
    assert_array_equal(data.X_txt.toarray(), arrays["YAll"])


# --------------------------------------------------------------------------- #
# malformed files
# --------------------------------------------------------------------------- #
def test_missing_variable_names_file_and_key(tmp_path, arrays):
    path = _write_single(tmp_path / "FLICKR-25K.mat", arrays, YAll=None)
    with pytest.raises(
        ValueError,
        match=r"FLICKR-25K\.mat has no variable 'YAll'.*"
        r"it holds \['LAll', 'images'\]",
    ):
        load_mirflickr(path, n_query=5)
    path = _write_single(tmp_path / "g.mat", arrays, images=None)
    with pytest.raises(ValueError, match=r"g\.mat has no variable 'IAll' or 'images'"):
        load_mirflickr(path, n_query=5)


def test_mismatched_rows_name_file_and_key(tmp_path, arrays):
    path = _write_single(tmp_path / "f.mat", arrays, YAll=arrays["YAll"][:-1])
    with pytest.raises(
        ValueError,
        match=r"f\.mat: variable 'YAll' has shape "
        r"\(29, 12\).*expected 30 rows",
    ):
        load_mirflickr(path, n_query=5)
    path = _write_single(tmp_path / "t.mat", arrays, YAll=arrays["YAll"].T)
    with pytest.raises(ValueError, match="'YAll'.*looks transposed"):
        load_mirflickr(path, n_query=5)
    folder = _write_folder(tmp_path / "folder", arrays, features=True)
    scipy.io.savemat(
        folder / "XAll" / "mirflickr25k-xall-vgg.mat", {"XAll": arrays["XAll"][:10]}
    )
    with pytest.raises(
        ValueError,
        match=r"mirflickr25k-xall-vgg\.mat: variable "
        r"'XAll' has shape \(10, 8\)",
    ):
        load_mirflickr(folder, n_query=5)
    path = _write_single(
        tmp_path / "p.mat", arrays, images=np.moveaxis(arrays["IAll"], -1, 0)
    )
    with pytest.raises(
        ValueError,
        match=r"p\.mat: variable 'images' has shape "
        r"\(30, 4, 4, 3\); raw images are stored as height x width",
    ):
        load_mirflickr(path, n_query=5)


def test_bad_labels_and_bad_files(tmp_path, arrays):
    path = _write_single(tmp_path / "f.mat", arrays, LAll=arrays["LAll"] * 3)
    with pytest.raises(ValueError, match=r"f\.mat: variable 'LAll' must be a 0/1"):
        load_mirflickr(path, n_query=5)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mirflickr(tmp_path / "nowhere.mat")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file" * 20)
    with pytest.raises(ValueError, match=r"junk\.mat is not a readable MATLAB"):
        load_mirflickr(tmp_path / "junk.mat")
    folder = _write_folder(tmp_path / "folder", arrays)
    (folder / "YAll" / "mirflickr25k-yall.mat").unlink()
    with pytest.raises(FileNotFoundError, match="variable 'YAll'; looked for"):
        load_mirflickr(folder, n_query=5)
    with pytest.raises(ValueError, match="layout='dcmh' reads a single .mat file"):
        load_mirflickr(folder, layout="dcmh")
    with pytest.raises(ValueError, match="images"):
        load_mirflickr(path, images="jpeg")


def _v73_header():
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created by: skhash tests"
    return text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM"


def test_v73_file_without_h5py_says_how_to_read_it(tmp_path, monkeypatch):
    path = tmp_path / "FLICKR-25K.mat"
    path.write_bytes(_v73_header() + b"\x00" * 512)
    monkeypatch.setitem(sys.modules, "h5py", None)  # as if not installed
    with pytest.raises(
        ImportError,
        match=r"FLICKR-25K\.mat is a MATLAB v7\.3.*"
        "pip install h5py",
    ):
        load_mirflickr(path)


def test_v73_hdf5_files(tmp_path, arrays):
    h5py = pytest.importorskip("h5py")

    def write(path, variables):
        # MATLAB v7.3: HDF5 after a 512-byte header, axes stored reversed
        with h5py.File(path, "w", userblock_size=512) as f:
            for key, value in variables.items():
                if sp.issparse(value):
                    value = sp.csc_matrix(value)
                    group = f.create_group(key)
                    group.attrs["MATLAB_sparse"] = value.shape[0]
                    group["data"], group["ir"], group["jc"] = (
                        value.data,
                        value.indices,
                        value.indptr,
                    )
                else:
                    f[key] = np.asarray(value).T
        with open(path, "r+b") as fh:
            fh.write(_v73_header())

    single = tmp_path / "FLICKR-25K.mat"
    write(
        single,
        {"images": arrays["IAll"], "YAll": arrays["YAll"], "LAll": arrays["LAll"]},
    )
    _check_content(load_mirflickr(single, n_query=5, n_train=10), arrays)

    folder = tmp_path / "nus"
    _write_folder(folder, arrays, prefix="nus-wide-tc10", subfolders=False)
    # DJSRH keeps NUS-WIDE's tags and images as v7.3 files
    write(folder / "nus-wide-tc10-yall.mat", {"YAll": sp.csr_matrix(arrays["YAll"])})
    write(folder / "nus-wide-tc10-iall.mat", {"IAll": arrays["IAll"]})
    data = load_nuswide(folder, n_query=5, n_train=10)
    assert sp.issparse(data.X_txt)
    data.X_txt = data.X_txt.toarray()
    _check_content(data, arrays)


@pytest.mark.parametrize(
    "content", [b"", b"MATLAB 5.0 MAT-file"], ids=["0-byte", "cut"]
)
def test_empty_or_truncated_file_is_a_value_error_naming_it(tmp_path, content):
    # an interrupted download: scipy's MatReadError is no ValueError subclass
    path = tmp_path / "FLICKR-25K.mat"
    path.write_bytes(content)
    with pytest.raises(
        ValueError, match=r"FLICKR-25K\.mat is not a readable MATLAB \.mat file"
    ):
        load_mirflickr(path, n_query=5)


def test_transposed_labels_blame_labels(tmp_path, arrays):
    path = _write_single(tmp_path / "f.mat", arrays, LAll=arrays["LAll"].T)
    with pytest.raises(ValueError) as info:
        load_mirflickr(path, n_query=5)
    message = str(info.value)
    assert "variable 'LAll' has shape (5, 30)" in message
    assert "holds 30 items in 'YAll'" in message
    assert "'LAll' looks transposed" in message and "LAll.T" in message
    # the text is still blamed when it is the odd one out
    path = _write_single(tmp_path / "t.mat", arrays, YAll=arrays["YAll"].T)
    with pytest.raises(ValueError, match="variable 'YAll'.*looks transposed"):
        load_mirflickr(path, n_query=5)


def test_unlabeled_items_warn_with_the_fix(tmp_path, arrays):
    L = arrays["LAll"].copy()
    L[::3] = 0
    path = _write_single(tmp_path / "f.mat", arrays, LAll=L)
    with pytest.warns(UserWarning) as record:
        data = load_mirflickr(path, n_query=5, n_train=None)
    (warning,) = [w for w in record if "no label" in str(w.message)]
    message = str(warning.message)
    assert "10 of the 30 items have no label" in message
    assert "'LAll'" in message and "keep = data.Y.any(axis=1)" in message
    assert warning.filename == __file__  # points at the caller
    # the items are kept, and the suggested filter drops them from the split
    assert data.Y.shape == (30, 5)
    keep = data.Y.any(axis=1)
    train_idx = data.train_idx[keep[data.train_idx]]
    assert len(train_idx) == len(data.train_idx) - np.sum(~keep[data.train_idx])
    assert data.Y[train_idx].any(axis=1).all()

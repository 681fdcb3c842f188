"""fileio.atomic_write and fileio.read_archive: atomic writes and archives read without pickle."""

import io
import zipfile

import numpy as np
import pytest

from fileio import atomic_write, read_archive


def test_atomic_write_gives_ordinary_or_previous_permissions(tmp_path):
    path = tmp_path / "file.bin"
    atomic_write(path, lambda f: f.write(b"one"))
    assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o600)
    atomic_write(path, lambda f: f.write(b"two"))
    assert path.read_bytes() == b"two"
    assert path.stat().st_mode & 0o777 == 0o600




def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "file.bin"
    atomic_write(path, lambda f: f.write(b"old"))

    def fail(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_read_archive_refuses_a_single_array_and_names_the_writer(tmp_path):
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"not a readable thing .*single array.*write it with make_thing"):
        read_archive(tmp_path / "one.npy", (), "thing", "make_thing")
    np.savez(tmp_path / "two.npz", a=np.zeros(2))
    assert set(read_archive(tmp_path / "two.npz", ("a",), "thing", "make_thing")) == {"a"}
    with pytest.raises(ValueError, match=r"it lacks \['b'\]"):
        read_archive(tmp_path / "two.npz", ("a", "b"), "thing", "make_thing")


def test_a_header_that_promises_more_than_the_file_holds_is_refused_before_reading(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (100000, 100000)})
    with zipfile.ZipFile(tmp_path / "forged.npz", "w") as archive:
        archive.writestr("W1.npy", header.getvalue() + bytes(64))  # 40 GB promised, 64 bytes there
    with pytest.raises(ValueError, match="promises 40,000,000,000 bytes but the file holds"):
        read_archive(tmp_path / "forged.npz", (), "thing", "make_thing")

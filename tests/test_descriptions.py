"""Inputs that would make SpikeInterface run code are refused before it reads them (crsae_sort.io.descriptions)."""
import json
import pickle
import shutil

import numpy as np
import pytest

from crsae_sort import InputError
from crsae_sort.io.reading import open_recording


def _planted(marker) -> dict:
    """A description whose loading would run ``mkdir marker``."""
    return {"class": "subprocess.Popen", "module": "subprocess", "kwargs": {"args": ["mkdir", str(marker)]},
            "version": "0.0", "annotations": {}, "properties": {}}


def test_a_saved_folder_and_its_json_description_open(saved_tetrode_10s, tmp_path):
    folder = open_recording(saved_tetrode_10s)
    described = tmp_path / "rec.json"
    folder.dump_to_json(described)
    assert open_recording(described).get_num_channels() == folder.get_num_channels() == 4


def test_a_description_naming_another_class_is_refused_and_never_run(saved_tetrode_10s, tmp_path):
    marker = tmp_path / "code_ran"
    direct = tmp_path / "direct.json"
    direct.write_text(json.dumps(_planted(marker)))
    with pytest.raises(InputError, match="'subprocess.Popen', which is not a SpikeInterface class"):
        open_recording(direct)
    # nested: a SpikeInterface preprocessing step whose parent recording is the planted object
    inner = tmp_path / "nested.json"
    open_recording(saved_tetrode_10s).frame_slice(0, 100).dump_to_json(inner)
    nested = json.loads(inner.read_text())
    nested["kwargs"]["parent_recording"] = _planted(marker)
    inner.write_text(json.dumps(nested))
    with pytest.raises(InputError, match="not a SpikeInterface class"):
        open_recording(inner)
    assert not marker.exists()


def test_a_pickled_description_is_refused(saved_tetrode_10s, tmp_path):
    path = tmp_path / "rec.pkl"
    path.write_bytes(pickle.dumps({"kwargs": {}}))
    with pytest.raises(InputError, match="is a pickle, and opening a pickle runs whatever code it holds"):
        open_recording(path)


def test_a_saved_folder_with_a_planted_class_or_pickled_property_is_refused(saved_tetrode_10s, tmp_path):
    marker = tmp_path / "code_ran"
    folder = tmp_path / "copy"
    shutil.copytree(saved_tetrode_10s, folder)
    binary = folder / "binary.json"
    original = binary.read_text()
    described = json.loads(original)
    described["kwargs"]["planted"] = _planted(marker)
    binary.write_text(json.dumps(described))
    with pytest.raises(InputError, match="binary.json asks SpikeInterface to build 'subprocess.Popen'"):
        open_recording(folder)
    binary.write_text(original)
    (folder / "properties").mkdir(exist_ok=True)
    np.save(folder / "properties" / "note.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="note.npy holds pickled Python objects"):
        open_recording(folder)
    assert not marker.exists()


def test_the_report_refuses_a_planted_recording_description(tmp_path):
    """The report reopens the sorted recording from the output folder's recording.json (a folder that may
    be shared): a planted description is refused, with how to pass the recording instead."""
    from crsae_sort.report import _recording

    marker = tmp_path / "code_ran"
    (tmp_path / "recording.json").write_text(json.dumps(_planted(marker)))
    with pytest.raises(InputError, match="not a SpikeInterface class.*pass the recording with --recording"):
        _recording(tmp_path, None)
    assert not marker.exists()

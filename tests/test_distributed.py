"""Scale-out with dask.distributed: a LocalCluster computes what eager reads give."""
import numpy as np
import pytest

import xfeldata
from xfeldata.testing import make_demo_run

distributed = pytest.importorskip('distributed')

MOTOR = 'SPB_IRU_MOTORS/MOTOR/X'


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp('dist_run')
    make_demo_run(d)
    return xfeldata.RunDirectory(d)


@pytest.fixture(scope='module')
def client():
    # Two worker processes: records and plans travel by pickle, files are
    # opened in the workers.
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def _image_key(run):
    src = next(s for s in sorted(run.instrument_sources) if 'DET/0CH0' in s)
    return run[src, 'image.data']


def _motor_sum(tid, data):
    return float(np.sum(data[MOTOR]['actualPosition.value']))


def test_dask_array_sum_on_a_cluster(run, client):
    kd = _image_key(run)
    arr = kd.dask_array()
    assert arr.npartitions >= 1
    got = client.compute(arr.sum(dtype=np.uint64)).result()
    assert int(got) == int(kd.ndarray().sum(dtype=np.uint64))
    mean = client.compute(arr.astype(np.float64).mean(axis=0)).result()
    np.testing.assert_allclose(mean, kd.ndarray().astype(np.float64).mean(axis=0))


def test_map_trains_on_a_cluster(run, client):
    sel = run.select([(MOTOR, '*')]).select_trains(np.s_[3:40])
    want = [(int(t), _motor_sum(t, d)) for t, d in sel.trains()]
    got = sel.map_trains(_motor_sum, client=client, trains_per_task=7, with_train_ids=True)
    assert got == want
    assert sel.map_trains(_motor_sum, client=client) == [r for _, r in want]


def test_map_trains_without_a_client(run, capsys):
    sel = run.select([(MOTOR, '*')]).select_trains(np.s_[:12])
    want = [_motor_sum(t, d) for t, d in sel.trains()]
    assert sel.map_trains(_motor_sum, trains_per_task=5, progress=False) == want
    assert run.select_trains(np.s_[:0]).map_trains(_motor_sum) == []
    with pytest.raises(ValueError, match='trains_per_task'):
        sel.map_trains(_motor_sum, trains_per_task=0)

"""NetScore reproduces the published figures and rejects meaningless inputs."""

import pytest

from defect_nas.core.errors import DefectNasError
from defect_nas.core.netscore import NetScoreConfig, netscore


def test_tinydefectnet_and_resnet50_vectors():
    assert netscore(98, 427_776, 97_263_435) == pytest.approx(93.46, abs=0.005)
    assert netscore(98, 24_136_710, 1_115_962_374) == pytest.approx(65.35, abs=0.005)


def test_more_accuracy_fewer_params_or_macs_score_higher():
    base = netscore(98, 500_000, 100e6)
    assert netscore(99, 500_000, 100e6) > base
    assert netscore(98, 250_000, 100e6) > base
    assert netscore(98, 500_000, 50e6) > base


def test_exponents_and_units_are_configurable_and_described():
    cfg = NetScoreConfig(alpha=1, beta=0, gamma=0)
    assert netscore(50, 1, 1, cfg) == pytest.approx(20 * 1.69897, abs=1e-4)  # 20 log10(50)
    assert "a^1" in cfg.describe() and "MACs / 1e+09" in cfg.describe()


@pytest.mark.parametrize("acc, p, m", [(0, 1e5, 1e8), (101, 1e5, 1e8), (98, 0, 1e8), (98, 1e5, -1)])
def test_bad_inputs_are_rejected(acc, p, m):
    with pytest.raises(DefectNasError):
        netscore(acc, p, m)

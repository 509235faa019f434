"""Devices found by themselves: ``auto`` against the resources a cluster reports (no GPU needed)."""

from __future__ import annotations

import os

import pytest

from nationmap.devices import (AUTO, CPU_BATCH, GPU_BATCH, Bf16Support, available_cpus, cgroup_cpu_quota,
                               choose_precision, cpu_bf16_features, parse_auto, plan_predictors, probe_bf16,
                               resolve_gpus)
from nationmap.files import JOBS_DIR
from nationmap.errors import InputError
from nationmap.infer.config import InferConfig

CPU_MACHINE = {"CPU": 2.0, "memory": 1e10}  # as ray.cluster_resources() reports a laptop
GPU_CLUSTER = {"CPU": 64.0, "GPU": 8.0}  # two nodes of four GPUs


def test_auto_is_the_cpu_without_gpus_and_one_gpu_each_with_them():
    assert resolve_gpus(AUTO, 1, CPU_MACHINE, "predictor actor") == 0.0
    assert resolve_gpus(AUTO, 4, GPU_CLUSTER, "training workers") == 1.0
    assert resolve_gpus(0.5, 4, GPU_CLUSTER, "training workers") == 0.5  # an explicit number wins
    assert resolve_gpus(0, 4, GPU_CLUSTER, "training workers") == 0.0
    with pytest.raises(InputError, match="16 training workers and the Ray cluster has 8 GPU"):
        resolve_gpus(AUTO, 16, GPU_CLUSTER, "training workers")
    with pytest.raises(InputError, match="1 predictor actor x 1 GPU = 1 GPU, but the Ray cluster has 0"):
        resolve_gpus(1.0, 1, CPU_MACHINE, "predictor actor")


def test_predictor_plan_fits_the_cluster():
    cpu = plan_predictors(AUTO, AUTO, 0, 1.0, CPU_MACHINE, scenes=10)
    assert (cpu.actors, cpu.gpus, cpu.batch_size) == (2, 0.0, CPU_BATCH)  # one actor per CPU
    gpu = plan_predictors(AUTO, AUTO, 0, 2.0, GPU_CLUSTER, scenes=100)
    assert (gpu.actors, gpu.gpus, gpu.batch_size) == (8, 1.0, GPU_BATCH)  # one actor per GPU
    assert "8 predictor actor(s) x 1 GPU, batch 32 windows" == gpu.describe()
    assert plan_predictors(AUTO, AUTO, 0, 2.0, GPU_CLUSTER, scenes=3).actors == 3  # never more than the scenes
    assert plan_predictors(0.5, 16, 0, 2.0, GPU_CLUSTER, scenes=100).actors == 16  # half a GPU each
    explicit = plan_predictors(AUTO, 4, 2, 1.0, GPU_CLUSTER, scenes=100)
    assert (explicit.actors, explicit.gpus, explicit.batch_size) == (2, 1.0, 4)


def test_auto_settings_in_configs_and_on_the_command_line():
    cfg = InferConfig(region="demo", month="2022-09", lulc_model="m")
    assert cfg.gpus_per_actor == AUTO and cfg.batch_size == AUTO
    assert cfg.window_settings(256).batch_size == CPU_BATCH  # until the devices are known
    with pytest.raises(InputError, match="gpus_per_actor must be a number or 'auto', not 'many'"):
        InferConfig(region="demo", month="2022-09", lulc_model="m", gpus_per_actor="many")
    with pytest.raises(InputError, match="gpus_per_actor must be >= 0"):
        InferConfig(region="demo", month="2022-09", lulc_model="m", gpus_per_actor=-1.0)
    assert parse_auto("auto", "gpus-per-actor") == AUTO and parse_auto("0", "gpus-per-actor") == 0.0
    assert parse_auto(None, "gpus-per-actor") is None and parse_auto("16", "batch-size", integer=True) == 16
    with pytest.raises(InputError, match="--batch-size must be a whole number or 'auto', not '8.5'"):
        parse_auto("8.5", "batch-size", integer=True)


def test_the_scene_stage_asks_ray_and_runs_on_what_it_reports(ray_local, monkeypatch):
    """Through the pipeline's scene stage: the local 2-CPU Ray gives CPU actors; the same Ray
    reporting 2 GPUs (its resources patched, no GPU needed) gives one GPU actor each, batch 32."""
    from nationmap.infer import ray_data
    from nationmap.infer.stages import predict_scenes
    from nationmap.infer.windows import WindowSettings

    seen, lines = [], []
    monkeypatch.setattr(ray_data, "predict_scenes_ray",
                        lambda jobs, cfg, paths, settings, plan, on_done: seen.append((plan, settings)) or [])
    cfg = InferConfig(region="demo", month="2022-09", lulc_model="m")
    models = type("Models", (), {"paths": {"lulc": "m"}})()
    jobs = [object()] * 5
    predict_scenes(jobs, cfg, models, WindowSettings(size=256), lines.append)
    assert ray_data.cluster_resources()["CPU"] == 2 and "GPU" not in ray_data.cluster_resources()
    plan, settings = seen[-1]
    assert (plan.actors, plan.gpus, settings.batch_size) == (2, 0.0, CPU_BATCH)
    assert lines[-1] == "devices: 2 predictor actor(s) x 1 CPU, batch 8 windows"
    monkeypatch.setattr(ray_local, "cluster_resources", lambda: {"CPU": 2.0, "GPU": 2.0})
    predict_scenes(jobs, cfg, models, WindowSettings(size=256), lines.append)
    plan, settings = seen[-1]
    assert (plan.actors, plan.gpus, settings.batch_size) == (2, 1.0, GPU_BATCH)
    assert lines[-1] == "devices: 2 predictor actor(s) x 1 GPU, batch 32 windows"


# --- precision auto: bf16 where the hardware runs it natively ------------------------------------

XEON_AMX = Bf16Support("cpu", "Intel(R) Xeon(R) Platinum 8480+", ("AMX", "AVX512-BF16"))
EPYC_ZEN2 = Bf16Support("cpu", "AMD EPYC 7B12", ())  # AVX2 only
H100 = Bf16Support("cuda", "NVIDIA H100 80GB HBM3", ("sm_90",))
T4 = Bf16Support("cuda", "Tesla T4", ())  # sm_75: bf16 only emulated


def test_auto_precision_is_bf16_only_where_native():
    assert choose_precision("auto", XEON_AMX).chosen == "bf16"
    assert choose_precision("auto", H100).chosen == "bf16"
    for device in (EPYC_ZEN2, T4):
        choice = choose_precision("auto", device)
        assert (choice.chosen, choice.requested) == ("fp32", "auto")
        assert choice.reason == "auto: bf16 would be emulated" and device.name in choice.describe()
    assert choose_precision("fp32", XEON_AMX).chosen == "fp32"  # an explicit fp32 always wins
    assert choose_precision("bf16", XEON_AMX).chosen == "bf16"


def test_explicit_bf16_where_emulated_is_refused_unless_forced():
    with pytest.raises(InputError, match=r"precision bf16 on CPU AMD EPYC 7B12 \(no native bf16\): .*--force-bf16"):
        choose_precision("bf16", EPYC_ZEN2)
    forced = choose_precision("bf16", EPYC_ZEN2, force=True)
    assert forced.chosen == "bf16" and "emulated" in forced.reason
    with pytest.raises(InputError, match="unknown precision 'fp16'"):
        choose_precision("fp16", XEON_AMX)


def test_the_onednn_isa_cap_turns_native_bf16_off():
    assert cpu_bf16_features(True, True) == ("AMX", "AVX512-BF16")
    assert cpu_bf16_features(False, True) == ("AVX512-BF16",)
    assert cpu_bf16_features(True, True, "AVX2") == ()  # what the machine then runs: emulated bf16
    assert cpu_bf16_features(True, True, "AVX512_CORE_BF16") == ("AVX512-BF16",)
    assert cpu_bf16_features(True, True, "AVX512_CORE_AMX") == ("AMX", "AVX512-BF16")
    assert cpu_bf16_features(False, False, "ALL") == ()
    assert cpu_bf16_features(True, False, "NOT_AN_ISA") == ("AMX",)  # oneDNN ignores a name it does not know


def test_probe_reads_torch_and_the_environment(monkeypatch):
    import torch

    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    for amx, avx in ((False, False), (True, False), (False, True)):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda avx=avx: avx)
        probe = probe_bf16("cpu")
        assert probe.kind == "cpu" and bool(probe.native) == (amx or avx)
        assert choose_precision("auto", probe).chosen == ("bf16" if amx or avx else "fp32")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    assert probe_bf16("cpu").native == ()
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert probe_bf16("cuda") == T4  # emulation does not count as native


def test_the_cpu_recipes_use_auto_precision():
    from nationmap.train.config import resolve_config

    for spec in sorted(JOBS_DIR.glob("cpu-*/*.toml")):
        if spec.stem in ("pretrain", "lulc", "water"):
            assert resolve_config(spec.stem, spec, {}).precision == "auto", spec


def test_available_cpus_follow_the_affinity_and_the_cgroup_quota(tmp_path, monkeypatch):
    v2_proc = tmp_path / "proc-v2"
    v2_proc.write_text("0::/kubepods/pod1/ctr\n")
    root = tmp_path / "v2"
    ctr = root / "kubepods" / "pod1" / "ctr"
    ctr.mkdir(parents=True)
    assert available_cpus(str(root), str(v2_proc)) == len(os.sched_getaffinity(0))  # no quota: the affinity mask
    (ctr / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(str(root), str(v2_proc)) is None
    (root / "kubepods" / "cpu.max").write_text("150000 100000\n")  # a limit on a parent cgroup
    assert cgroup_cpu_quota(str(root), str(v2_proc)) == 1.5
    (ctr / "cpu.max").write_text("400000 100000\n")  # the smallest on the way up wins
    assert cgroup_cpu_quota(str(root), str(v2_proc)) == 1.5
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))  # a 64-core host
    assert available_cpus(str(root), str(v2_proc)) == 2
    v1_proc = tmp_path / "proc-v1"
    v1_proc.write_text("4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n")
    v1 = tmp_path / "v1"
    (v1 / "cpu,cpuacct" / "docker" / "abc").mkdir(parents=True)
    quota = v1 / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us"
    quota.write_text("-1\n")
    (quota.parent / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus(str(v1), str(v1_proc)) == 64
    quota.write_text("400000\n")
    assert available_cpus(str(v1), str(v1_proc)) == 4
    assert available_cpus(str(tmp_path / "none"), str(tmp_path / "no-such-file")) == 64


def test_inference_autocasts_only_on_a_gpu_with_native_bf16(monkeypatch):
    import torch

    from nationmap.infer.scene import Head, SceneModels

    head = Head("lulc", torch.nn.Conv2d(1, 2, 1), "softmax", -12.0, 6.0, ("a", "b"))
    for name, capability, native in (("Tesla T4", (7, 5), False), ("NVIDIA H100 80GB HBM3", (9, 0), True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0, c=capability: c)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0, n=name: n)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True, n=native:
                            n or including_emulation)
        assert SceneModels([head], device="cuda").autocast is native, name


def test_a_job_spec_is_found_by_name_from_any_directory(tmp_path, monkeypatch):
    from nationmap.errors import InputError
    from nationmap.files import job_spec_path

    monkeypatch.chdir(tmp_path)  # outside the checkout
    for name in ("cpu-demo/lulc", "cpu-demo/lulc.toml", "jobs/cpu-demo/lulc.toml"):
        assert job_spec_path(name) == JOBS_DIR / "cpu-demo" / "lulc.toml", name  # never the GPU recipe lulc.toml
    assert job_spec_path("refresh") == JOBS_DIR / "refresh.toml"
    (tmp_path / "mine.toml").write_text("[train]\n")
    assert job_spec_path("mine.toml").resolve() == tmp_path / "mine.toml"  # a file here wins
    for bad in ("nope", "../lulc", "cpu-demo/../../pyproject", "/etc/passwd.toml"):
        with pytest.raises(InputError, match="not found"):
            job_spec_path(bad)

"""tegrastats and trtexec parsers on real output lines (bench_samples.py), latency statistics,
device facts. Every expected number below is read off the line by hand.
"""

from datetime import datetime

import numpy as np
import pytest
from bench_samples import (
    AGX_ORIN,
    AGX_ORIN_NC,
    AGX_ORIN_THREE,
    NANO,
    NANO_BUSY,
    ORIN_NANO,
    TRT8,
    TRT10,
    TX1_OLD,
    XAVIER_NX,
)

from edgekd.bench.device import device_id, jetson_info, l4t_release, slug
from edgekd.bench.runner import parse_batch_sizes
from edgekd.bench.stats import latency_stats
from edgekd.bench.tegrastats import CpuCore, Rail, parse_line, summarise_power, total_power_mw
from edgekd.bench.timing import split_calls, time_batch
from edgekd.bench.trtexec import decode_version, parse_trtexec_output, trtexec_command
from edgekd.card.bench import latency_cells, ms_range
from edgekd.errors import EdgeKDError


def test_nano_unitless_input_rail_off_cores_and_single_gpu_frequency():
    s = parse_line(NANO)
    assert (s.ram_used_mb, s.ram_total_mb) == (1409, 3964)
    assert (s.swap_used_mb, s.swap_total_mb, s.swap_cached_mb) == (0, 1982, 0)
    assert s.cpu == [CpuCore(22, 518), CpuCore(67, 518), None, None]
    assert (s.gpu_load_pct, s.gpu_freq_mhz) == (0, [76])
    assert s.rails == {
        "POM_5V_IN": Rail(2003, 2003),
        "POM_5V_GPU": Rail(0, 0),
        "POM_5V_CPU": Rail(320, 320),
    }  # RAM, SWAP and IRAM are not rails
    assert total_power_mw(s) == (2003, "POM_5V_IN")
    assert s.time is None


def test_old_tx1_format_shares_one_cpu_frequency():
    s = parse_line(TX1_OLD)
    assert s.cpu == [CpuCore(17, 408), CpuCore(13, 408), CpuCore(29, 408), CpuCore(5, 408)]
    assert (s.gpu_load_pct, s.gpu_freq_mhz) == (3, [76])
    assert (s.swap_used_mb, s.swap_cached_mb) == (873, 295)
    assert s.rails == {} and total_power_mw(s) is None


def test_xavier_nx_vdd_in_with_units_and_timestamp():
    s = parse_line(XAVIER_NX)
    assert s.time == datetime(2024, 7, 9, 13, 31, 31)
    assert s.rails["VDD_IN"] == Rail(2763, 2846)
    assert s.rails["VDD_SOC"] == Rail(650, 711)
    assert total_power_mw(s) == (2763, "VDD_IN")  # the input rail, not a sum of sub-rails
    assert (s.gpu_load_pct, s.gpu_freq_mhz) == (0, [114])
    assert len(s.cpu) == 6 and s.cpu[0] == CpuCore(23, 1397)


def test_orin_nano_gpu_without_frequency_and_a_unitless_average():
    s = parse_line(ORIN_NANO)
    assert (s.gpu_load_pct, s.gpu_freq_mhz) == (1, [])
    assert s.cpu[-2:] == [None, None]
    assert s.rails["VDD_CPU_GPU_CV"] == Rail(598, 598)
    assert total_power_mw(s) == (3913, "VDD_IN")


def test_agx_orin_has_no_input_rail_so_every_rail_is_summed_and_named():
    s = parse_line(AGX_ORIN)
    assert (s.gpu_load_pct, s.gpu_freq_mhz) == (14, [407, 407])
    assert len(s.cpu) == 12
    mw, label = total_power_mw(s)
    assert mw == 3150 + 14312 + 4968 + 1091 == 23521
    assert label == "sum of VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0+VDDQ_VDD2_1V8AO"


def test_agx_orin_unconnected_nc_channels_are_left_out():
    s = parse_line(AGX_ORIN_NC)
    assert "NC" not in s.rails
    assert total_power_mw(s) == (
        2340 + 390 + 4025 + 301,
        "sum of VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0+VDDQ_VDD2_1V8AO",
    )
    assert s.gpu_freq_mhz == [0, 0]


def test_agx_orin_three_values_are_now_avg_max():
    s = parse_line(AGX_ORIN_THREE)
    assert s.rails["VDD_GPU_SOC"] == Rail(3180, 3100, 3400)
    assert total_power_mw(s) == (3180 + 800 + 4100, "sum of VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0")
    assert (s.gpu_load_pct, s.gpu_freq_mhz) == (12, [1300, 1300])
    assert s.cpu == [CpuCore(12, 1190), CpuCore(8, 1190), None, None]


def test_a_line_that_is_not_tegrastats_is_refused():
    with pytest.raises(ValueError, match="not a tegrastats line"):
        parse_line("tegrastats: command not found")


def test_power_summary_average_peak_and_energy_per_image():
    samples = [parse_line(NANO), parse_line(NANO_BUSY)]
    # average (2003 + 2247) / 2 = 2125 mW; 2.125 W over 2 s for 100 images = 42.5 mJ per image
    out = summarise_power(samples, images=100, seconds=2.0)
    assert out["measured"] == "POM_5V_IN" and out["samples"] == 2
    assert out["avg_w"] == pytest.approx(2.125)
    assert out["peak_w"] == pytest.approx(2.247)
    assert out["energy_per_image_mj"] == pytest.approx(42.5)
    assert out["rails_avg_mw"]["POM_5V_GPU"] == pytest.approx(39.0)
    assert out["gpu_load_pct_avg"] == pytest.approx(8.0)
    assert out["ram_used_mb_peak"] == 1655


def test_power_summary_without_rails_says_why():
    out = summarise_power([parse_line(TX1_OLD)], images=10, seconds=1.0)
    assert out["avg_w"] is None and out["note"] == "tegrastats printed no power rails"
    assert summarise_power([], images=10, seconds=1.0)["note"].startswith("no tegrastats line")


def test_trtexec_8_summary_with_only_the_99th_percentile():
    out = parse_trtexec_output(TRT8, batch=16)
    assert out["tensorrt_version"] == "8.4.0"
    assert out["throughput_qps"] == 41087.7
    assert out["throughput_ips"] == pytest.approx(41087.7 * 16)
    assert out["latency_ms"] == {
        "mean": 0.402238,
        "std": None,
        "min": 0.387207,
        "max": 0.447357,
        "p50": 0.401947,
        "p99": 0.420288,
    }
    assert out["gpu_compute_ms"]["p50"] == 0.388443  # not confused with the Latency line
    assert out["h2d_ms"]["max"] == 0.0571899
    assert out["enqueue_ms"]["p99"] == 0.126099
    assert out["d2h_ms"]["mean"] == 0.00360451
    assert out["total_host_walltime_s"] == 3.00119
    assert out["total_gpu_compute_s"] == 2.99202


def test_trtexec_10_summary_with_90_95_99_percentiles():
    out = parse_trtexec_output(TRT10, batch=1)
    assert out["tensorrt_version"] == "10.3.0"
    assert out["throughput_ips"] == 318.007
    lat = out["latency_ms"]
    assert (lat["p50"], lat["p90"], lat["p95"], lat["p99"]) == (3.14062, 3.14587, 3.14771, 3.15039)
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert out["h2d_ms"]["p90"] == 0.0  # --noDataTransfers
    assert out["enqueue_ms"]["max"] == 2.05505


def test_trtexec_failure_is_one_line():
    failed = (
        "[E] Error[4]: [network.cpp::validate::2925] Error Code 4: Internal Error (images: "
        "dynamic input is missing dimensions in profile 0.)\n&&&& FAILED TensorRT.trtexec "
        "[TensorRT v8601] # trtexec --onnx=model.onnx\n"
    )
    with pytest.raises(EdgeKDError, match=r"^trtexec: no performance summary .*Error Code 4") as err:
        parse_trtexec_output(failed)
    assert "\n" not in str(err.value)


def test_trtexec_version_tags_and_command_line():
    assert decode_version(8601) == "8.6.1"
    assert decode_version(8400) == "8.4.0"
    assert decode_version(100001) == "10.0.1"
    assert decode_version(100300) == "10.3.0"
    cmd = trtexec_command(
        "b/model.onnx", batch=8, input_name="images", chw=(3, 64, 64), iterations=50, executable="trtexec"
    )
    assert cmd == [
        "trtexec",
        "--onnx=b/model.onnx",
        "--shapes=images:8x3x64x64",
        "--warmUp=200",
        "--iterations=50",
        "--duration=0",
    ]
    cmd = trtexec_command(
        "b/model.fp16.engine", batch=1, input_name=None, chw=(3, 64, 64), duration_s=2.5, executable="trtexec"
    )
    assert cmd == ["trtexec", "--loadEngine=b/model.fp16.engine", "--warmUp=200", "--duration=2.5"]


def test_latency_stats_hand_worked():
    s = latency_stats([float(v) for v in range(1, 11)])
    # linear interpolation: h = 9q/100; p90 -> x[8.1] = 9.1, p95 -> x[8.55] = 9.55, p99 -> 9.91
    assert s["mean"] == 5.5 and s["min"] == 1.0 and s["max"] == 10.0
    assert s["p50"] == pytest.approx(5.5)
    assert s["p90"] == pytest.approx(9.1)
    assert s["p95"] == pytest.approx(9.55)
    assert s["p99"] == pytest.approx(9.91)
    # p10 -> x[0.9] = 1.9, p25 -> x[2.25] = 3.25, p75 -> x[6.75] = 7.75: the spread columns
    assert (s["p10"], s["p25"], s["p75"]) == pytest.approx((1.9, 3.25, 7.75))
    assert s["std"] == pytest.approx((82.5 / 9) ** 0.5)  # sum of squares about 5.5 is 82.5
    assert latency_stats([2.0])["std"] == 0.0


def test_timed_calls_split_into_repeats():
    assert split_calls(200, 5) == [40] * 5
    assert split_calls(10, 3) == [4, 3, 3] and split_calls(2, 5) == [1, 1] and split_calls(7, 1) == [7]
    calls = []
    r = time_batch(
        lambda x: calls.append(x.shape[0]),
        np.zeros((2, 1, 1, 1), np.float32),
        warmup=3,
        iterations=10,
        repeats=3,
    )
    assert len(calls) == 1 + 3 + 10 and r["iterations"] == 10 and r["repeats"] == 3
    chunks = (r["samples_ms"][:4], r["samples_ms"][4:7], r["samples_ms"][7:])
    assert r["repeat_p50_ms"] == [float(np.median(c)) for c in chunks]
    assert r["latency_ms"]["p50"] == pytest.approx(float(np.median(r["samples_ms"])))
    timed = time_batch(
        lambda x: None,
        np.zeros((1, 1, 1, 1), np.float32),
        warmup=0,
        iterations=None,
        duration=0.002,
        repeats=4,
    )  # each loop gets a share, and at least one call
    assert timed["repeats"] == 4 and timed["iterations"] >= 4


def test_latency_spread_cells():
    assert ms_range(1.1023, 1.4012) == "1.10-1.40" and ms_range(9.87, 14.46) == "9.87-14.5"
    assert ms_range(0.05234, 172.8) == "0.0523-173" and ms_range(None, 2.0) is None
    timing = {"latency_ms": {"p10": 1.0, "p50": 1.2, "p90": 2.0}, "repeat_p50_ms": [1.25, 1.18, 1.3]}
    assert latency_cells(timing) == {"p10_p90_ms": "1.00-2.00", "repeat_p50_ms": "1.18-1.30"}
    # a result from before repeats: no spread of the medians, p10 absent
    assert latency_cells({"latency_ms": {"p50": 1.2, "p90": 2.0}}) == {
        "p10_p90_ms": None,
        "repeat_p50_ms": None,
    }


def test_batch_size_lists():
    assert parse_batch_sizes("1,8,32") == [1, 8, 32]
    assert parse_batch_sizes(" 8, 1,8 ") == [8, 1]
    for bad in ("1,x", "0", "", "1,,8", "-4", "2.5"):
        with pytest.raises(EdgeKDError, match="--batch-sizes: .* positive integers"):
            parse_batch_sizes(bad)


def test_jetson_facts_from_a_fake_root(tmp_path):
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text(
        "# R36 (release), REVISION: 4.4, GCID: 41062509, BOARD: generic, EABI: aarch64, "
        "DATE: Mon Jun 16 16:07:13 UTC 2025\n"
    )
    for cpu in ("cpu0", "cpu1"):
        freq = tmp_path / "sys/devices/system/cpu" / cpu / "cpufreq"
        freq.mkdir(parents=True)
        (freq / "scaling_min_freq").write_text("1510400\n")
        (freq / "scaling_max_freq").write_text("1510400\n")
    gpu = tmp_path / "sys/class/devfreq/17000000.ga10b"
    gpu.mkdir(parents=True)
    (gpu / "min_freq").write_text("306000000\n")
    (gpu / "max_freq").write_text("624750000\n")
    info = jetson_info(tmp_path)
    assert info["model"] == "NVIDIA Jetson Orin Nano Developer Kit"
    assert info["l4t"] == "36.4.4"
    assert (info["cpu_locked"], info["gpu_locked"], info["clocks_locked"]) == (True, False, False)
    (gpu / "min_freq").write_text("624750000\n")  # what jetson_clocks does
    assert jetson_info(tmp_path)["clocks_locked"] is True
    assert (
        device_id({"jetson": info, "cpu": {"model": "ARMv8", "usable_cores": 6}})
        == "nvidia-jetson-orin-nano-developer-kit"
    )


def test_not_a_jetson_and_device_ids(tmp_path):
    assert jetson_info(tmp_path) is None
    assert l4t_release("# R32 (release), REVISION: 7.1, GCID: 29818004") == "32.7.1"
    assert slug("Intel(R) Xeon(R) CPU @ 2.20GHz") == "intel-r-xeon-r-cpu-2-20ghz"
    info = {
        "jetson": None,
        "cpu": {"model": "AMD EPYC", "usable_cores": 2},
        "gpus": [{"name": "NVIDIA A100-SXM4-40GB"}],
    }
    assert device_id(info) == "amd-epyc-2cpu+nvidia-a100-sxm4-40gb"

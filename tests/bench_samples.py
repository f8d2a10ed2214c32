# ruff: noqa: E501  (verbatim output lines)
"""Real tegrastats and trtexec output, shared by the bench tests.

The tegrastats lines are output printed by real boards, as quoted in public repositories and
forum threads (Nano, TX1, Xavier NX, Orin NX/Nano, AGX Orin), except ``AGX_ORIN_THREE``, written
from the ``inst/avg/max`` format in the bench issue. The trtexec outputs are a TensorRT 8.4 run
on an AGX Xavier (OE4T/meta-tegra#952) and a TensorRT 10.3 run of ResNet-50 on a JetPack 6 device.
"""

NANO = (
    "RAM 1409/3964MB (lfb 28x4MB) SWAP 0/1982MB (cached 0MB) IRAM 0/252kB(lfb 252kB) "
    "CPU [22%@518,67%@518,off,off] EMC_FREQ 0%@1600 GR3D_FREQ 0%@76 APE 25 PLL@28.5C CPU@32C "
    "PMIC@50C GPU@30.5C AO@39.5C thermal@31.25C POM_5V_IN 2003/2003 POM_5V_GPU 0/0 "
    "POM_5V_CPU 320/320"
)
NANO_BUSY = (
    "RAM 1655/3956MB (lfb 311x4MB) SWAP 0/1978MB (cached 0MB) IRAM 0/252kB(lfb 252kB) "
    "CPU [14%@204,14%@204,10%@204,11%@204] EMC_FREQ 3%@1600 GR3D_FREQ 16%@76 APE 25 PLL@36C "
    "CPU@39C iwlwifi@44C PMIC@50C GPU@37C AO@47C thermal@38C POM_5V_IN 2247/2189 "
    "POM_5V_GPU 78/78 POM_5V_CPU 275/275"
)
TX1_OLD = (
    "RAM 3468/3983MB (lfb 48x4MB) SWAP 873/8192MB (cached 295MB) cpu [17%,13%,29%,5%]@408 "
    "EMC 1%@408 APE 25 GR3D 3%@76"
)
XAVIER_NX = (
    "07-09-2024 13:31:31 RAM 3168/6851MB (lfb 2x4MB) SWAP 161/3426MB (cached 0MB) "
    "CPU [23%@1397,17%@1192,16%@1190,13%@1190,23%@1190,10%@1190] EMC_FREQ 2%@204 "
    "GR3D_FREQ 0%@[114] VIC_FREQ 115 APE 150 AUX@45C CPU@46.5C thermal@45.6C AO@45C "
    "GPU@45.5C PMIC@50C VDD_IN 2763mW/2846mW VDD_CPU_GPU_CV 650mW/670mW VDD_SOC 650mW/711mW"
)
ORIN_NANO = (
    "12-23-2024 22:54:11 RAM 3162/7620MB (lfb 4x2MB) SWAP 0/3810MB (cached 0MB) "
    "CPU [1%@729,0%@729,0%@729,0%@729,off,off] GR3D_FREQ 1% cpu@62.843C soc2@61.968C "
    "soc0@60.625C gpu@61.687C tj@62.843C soc1@61.687C VDD_IN 3913mW/3922mW "
    "VDD_CPU_GPU_CV 598mW/598 VDD_SOC 1238mW/1237mW"
)
AGX_ORIN = (
    "11-21-2025 08:49:48 RAM 13983/62780MB (lfb 424x4MB) SWAP 126/31390MB (cached 0MB) "
    "CPU [90%@2201,100%@2201,100%@2201,100%@2201,100%@2201,100%@2201,100%@2201,100%@2201,"
    "100%@2201,100%@2201,100%@2201,100%@2201] EMC_FREQ 1%@2133 GR3D_FREQ 14%@[407,407] "
    "VIC_FREQ 115 NVDLA0_FREQ @1600 APE 174 CV0@73.625C CPU@77.281C Tboard@62C SOC2@70C "
    "Tdiode@62.25C SOC0@69.531C CV1@72.5C GPU@69.125C tj@77.281C SOC1@68.968C CV2@67.25C "
    "VDD_GPU_SOC 3150mW/2971mW VDD_CPU_CV 14312mW/12415mW VIN_SYS_5V0 4968mW/5048mW "
    "VDDQ_VDD2_1V8AO 1091mW/1091mW"
)
AGX_ORIN_NC = (
    "04-11-2025 10:36:27 RAM 4321/62801MB (lfb 1759x4MB) SWAP 19/31400MB (cached 0MB) "
    "CPU [0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729,"
    "0%@729] EMC_FREQ 0%@2133 GR3D_FREQ 0%@[0,0] VIC_FREQ 729 APE 174 CV0@-256C "
    "CPU@44.562C Tboard@32C SOC2@40.093C Tdiode@33C SOC0@41.093C CV1@-256C GPU@-256C "
    "tj@44.343C SOC1@41.25C CV2@-256C VDD_GPU_SOC 2340mW/2340mW VDD_CPU_CV 390mW/390mW "
    "VIN_SYS_5V0 4025mW/4025mW NC 0mW/0mW VDDQ_VDD2_1V8AO 301mW/301mW NC 0mW/0mW"
)
AGX_ORIN_THREE = (
    "RAM 4023/30536MB (lfb 5555x4MB) SWAP 0/15268MB (cached 0MB) CPU [12%@1190,8%@1190,"
    "off,off] EMC_FREQ 0%@2133 GR3D_FREQ 12%@[1300,1300] cpu@45.5C tj@45.5C "
    "VDD_GPU_SOC 3180mW/3100mW/3400mW VDD_CPU_CV 800mW/790mW/950mW "
    "VIN_SYS_5V0 4100mW/4050mW/4300mW"
)


TRT8 = """\
[03/11/2022-14:57:03] [I] === Performance summary ===
[03/11/2022-14:57:03] [I] Throughput: 41087.7 qps
[03/11/2022-14:57:03] [I] Latency: min = 0.387207 ms, max = 0.447357 ms, mean = 0.402238 ms, median = 0.401947 ms, percentile(99%) = 0.420288 ms
[03/11/2022-14:57:03] [I] Enqueue Time: min = 0.0830078 ms, max = 0.229004 ms, mean = 0.090497 ms, median = 0.0871582 ms, percentile(99%) = 0.126099 ms
[03/11/2022-14:57:03] [I] H2D Latency: min = 0.00622559 ms, max = 0.0571899 ms, mean = 0.0104126 ms, median = 0.00952148 ms, percentile(99%) = 0.0272217 ms
[03/11/2022-14:57:03] [I] GPU Compute Time: min = 0.375977 ms, max = 0.403564 ms, mean = 0.388221 ms, median = 0.388443 ms, percentile(99%) = 0.393188 ms
[03/11/2022-14:57:03] [I] D2H Latency: min = 0.00195312 ms, max = 0.00537109 ms, mean = 0.00360451 ms, median = 0.00366211 ms, percentile(99%) = 0.00488281 ms
[03/11/2022-14:57:03] [I] Total Host Walltime: 3.00119 s
[03/11/2022-14:57:03] [I] Total GPU Compute Time: 2.99202 s
[03/11/2022-14:57:03] [I] Explanations of the performance metrics are printed in the verbose logs.
[03/11/2022-14:57:03] [I] 
&&&& PASSED TensorRT.trtexec [TensorRT v8400] # trtexec --loadEngine=mnist16.trt --batch=16
"""

TRT10 = """\
[05/13/2025-10:36:46] [I] === Performance summary ===
[05/13/2025-10:36:46] [I] Throughput: 318.007 qps
[05/13/2025-10:36:46] [I] Latency: min = 3.12671 ms, max = 3.15479 ms, mean = 3.14068 ms, median = 3.14062 ms, percentile(90%) = 3.14587 ms, percentile(95%) = 3.14771 ms, percentile(99%) = 3.15039 ms
[05/13/2025-10:36:46] [I] Enqueue Time: min = 0.844238 ms, max = 2.05505 ms, mean = 0.887139 ms, median = 0.872437 ms, percentile(90%) = 0.932861 ms, percentile(95%) = 0.953735 ms, percentile(99%) = 1.0658 ms
[05/13/2025-10:36:46] [I] H2D Latency: min = 0 ms, max = 0 ms, mean = 0 ms, median = 0 ms, percentile(90%) = 0 ms, percentile(95%) = 0 ms, percentile(99%) = 0 ms
[05/13/2025-10:36:46] [I] GPU Compute Time: min = 3.12671 ms, max = 3.15479 ms, mean = 3.14068 ms, median = 3.14062 ms, percentile(90%) = 3.14587 ms, percentile(95%) = 3.14771 ms, percentile(99%) = 3.15039 ms
[05/13/2025-10:36:46] [I] D2H Latency: min = 0 ms, max = 0 ms, mean = 0 ms, median = 0 ms, percentile(90%) = 0 ms, percentile(95%) = 0 ms, percentile(99%) = 0 ms
[05/13/2025-10:36:46] [I] Total Host Walltime: 3.00622 s
[05/13/2025-10:36:46] [I] Total GPU Compute Time: 3.00249 s
[05/13/2025-10:36:46] [I] Explanations of the performance metrics are printed in the verbose logs.
[05/13/2025-10:36:46] [I] 
&&&& PASSED TensorRT.trtexec [TensorRT v100300] # /usr/src/tensorrt/bin/trtexec --onnx=/usr/src/tensorrt/data/resnet50/ResNet50.onnx --fp16 --noDataTransfers --iterations=2
"""

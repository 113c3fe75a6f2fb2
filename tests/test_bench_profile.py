"""``benchmarks.bench_profile``'s reading of ``perf script`` output: each sample in the
class of the library it fell in, its period as its CPU seconds, and the child's marks.
(The benchmark itself needs ``perf`` and minutes: it is run by hand, not here.)"""

import pytest

from benchmarks import bench_profile as profile

# Lines as ``perf script -F tid,time,period,ip,sym,dso`` (perf 6.1) prints them.
PERF_LINES = """\
 9736 28321.567023:    5025125  ffffffff8230b789 _raw_spin_unlock_irqrestore ([kernel.kallsyms])
 9736 28323.481000:    5025125      7f7ea11ab197 PyObject_RichCompareBool (/usr/lib/libpython3.11.so.1.0)
 9742 28333.642631:    5025125      7f7e492810da [unknown] (/tmp/perf-9736.map)
 9743 28334.690531:   10050250      7f7e49281be0 [unknown] (/tmp/perf-9736.map)
 9768 28332.533779:    5025125      7f7e8d4e8ebf std::__find_if<llvm::SCEV const* const*, __gnu_cxx::__ops::_Iter_pred<llvm::SCEVAddExpr::SCEVAddExpr(llvm::FoldingSetNodeIDRef)::{lambda(llvm::SCEV const*)#1}> > (/site-packages/tensorflow/libtensorflow_cc.so.2)
 9744 28335.100000:    5025125      7f7ea0098109 _int_malloc (/usr/lib/x86_64-linux-gnu/libc.so.6)
 9744 28335.200000:    5025125      7f7ea0098109 __memmove_avx_unaligned_erms (/usr/lib/x86_64-linux-gnu/libc.so.6)
 9745 28335.300000:    5025125      7f7e90000001 ZSTD_compressBlock_fast (/site-packages/zstandard/backend_c.cpython-311-x86_64-linux-gnu.so)
 9745 28335.400000:    5025125      7f7e90000002 GDALCopyWords (/site-packages/rasterio.libs/libgdal-c8c9c467.so.36.3.10.3)
 9745 28335.500000:    5025125      7f7e90000003 FLOAT_pairwise_sum (/site-packages/numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so)
 9745 28335.600000:    5025125      7f7e90000004 inflate (/usr/lib/libz.so.1)
not a sample line
"""


def test_samples_are_classed_by_library_and_weighed_by_period():
    samples = profile.parse_samples(PERF_LINES)
    assert [kind for _, _, kind in samples] == [
        "OS kernel", "Python", profile.KERNEL, profile.KERNEL,
        "XLA / TensorFlow runtime", "glibc allocator", "glibc other (copies)", "ZSTD",
        "GDAL / libtiff", "numpy", "other"]
    assert samples[0][0] == pytest.approx(28321.567023)
    assert samples[3][1] == pytest.approx(0.01005025)  # the period, ns -> s
    # Every class a sample can get is one the table prints.
    assert {kind for _, _, kind in samples} <= set(profile.CLASSES)


def test_by_class_sums_the_samples_of_a_time_window():
    samples = profile.parse_samples(PERF_LINES)
    window = profile.by_class(samples, 28333.0, 28335.0)
    assert window == {profile.KERNEL: pytest.approx(0.015075375)}
    everything = profile.by_class(samples)
    assert sum(everything.values()) == pytest.approx(12 * 0.005025125)


def test_marks_are_read_from_a_childs_stdout():
    stdout = "some output\nmark started 123.500000\nmark kernel_end 130.25\n"
    assert profile.marks(stdout) == {"started": 123.5, "kernel_end": 130.25}

"""The machine's facts (nin.machine): CPU flags, cores, the cgroup's CPU quota; no framework."""

from nin.machine import cpu_has_bf16, cpu_quota


def test_cpu_bf16_detection(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f\n")
    assert not cpu_has_bf16(info)
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert cpu_has_bf16(info)
    assert not cpu_has_bf16(tmp_path / "missing")


def test_cgroup_cpu_quota_is_read_from_v2_and_v1(tmp_path):
    assert cpu_quota(str(tmp_path)) is None
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota(str(tmp_path)) is None
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("250000\n")
    assert cpu_quota(str(tmp_path)) == 3
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_quota(str(tmp_path)) is None  # v2 first: no quota
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_quota(str(tmp_path)) == 2


def test_cgroup_cpu_quota_is_read_in_the_process_own_cgroup_and_above(tmp_path):
    """A quota set on the process's own cgroup (named in /proc/self/cgroup), not the root,
    counts; so does one on a folder above it; the smallest wins."""
    root, me = tmp_path / "cgroup", tmp_path / "self-cgroup"
    job = root / "batch.slice" / "job-7"
    job.mkdir(parents=True)
    me.write_text("0::/batch.slice/job-7\n")
    (root / "cpu.max").write_text("max 100000\n")
    assert cpu_quota(str(root), str(me)) is None
    (job / "cpu.max").write_text("120000 100000\n")
    assert cpu_quota(str(root), str(me)) == 2  # the root says none, its own folder says 1.2
    (root / "batch.slice" / "cpu.max").write_text("50000 100000\n")
    assert cpu_quota(str(root), str(me)) == 1  # the folder above allows less
    # cgroup v1: the cpu controller's own line and folder
    v1_root, v1_me = tmp_path / "v1", tmp_path / "v1-self"
    v1_me.write_text("5:cpuacct,cpu:/docker/abc\n4:memory:/docker/abc\n0::/\n")
    folder = v1_root / "cpu" / "docker" / "abc"
    folder.mkdir(parents=True)
    (folder / "cpu.cfs_quota_us").write_text("300000\n")
    (folder / "cpu.cfs_period_us").write_text("100000\n")
    (v1_root / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1_root / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota(str(v1_root), str(v1_me)) == 3
    assert cpu_quota(str(v1_root), str(tmp_path / "missing")) is None  # the root's: none
    # a cgroup outside this namespace's ("/../x") is not below the root: the root's counts;
    # a name that is not UTF-8 is read, not raised on
    (root / "batch.slice" / "cpu.max").write_text("max 100000\n")
    me.write_text("0::/../batch.slice/job-7\n")
    assert cpu_quota(str(root), str(me)) is None
    me.write_bytes(b"0::/batch.slice/job-7\n1:name=x:/\xff\xfe\n")
    assert cpu_quota(str(root), str(me)) == 2

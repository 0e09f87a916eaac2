package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat: USER_HZ, which Linux fixes at 100
// for userspace on every architecture it runs on, whatever the kernel's own tick rate.
const userHZ = 100

// proc is one process whose cost a measurement counts.
type proc struct {
	Name string
	PID  int
}

// procSample is what /proc tells about a process at one moment.
type procSample struct {
	CPU     time.Duration // user + system time so far
	PeakRSS int64         // VmHWM: the resident set's high-water mark, bytes
}

// readProc samples a process.
func readProc(pid int) (procSample, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procSample{}, err
	}
	cpu, err := parseStatCPU(string(stat))
	if err != nil {
		return procSample{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procSample{}, err
	}
	return procSample{CPU: cpu, PeakRSS: parseStatusKB(string(status), "VmHWM") * 1024}, nil
}

// parseStatCPU returns utime+stime of a /proc/<pid>/stat line. The command name (field 2)
// may hold spaces and parentheses, so the fields are counted from its last ")".
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("short stat %q", stat)
	}
	ut, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime: %w", err)
	}
	st, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime: %w", err)
	}
	return time.Duration(ut+st) * time.Second / userHZ, nil
}

// parseStatusKB returns a "<field>: <n> kB" value of /proc/<pid>/status, 0 when missing.
func parseStatusKB(status, field string) int64 {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		return n
	}
	return 0
}

// costSnapshot holds samples of a set of processes.
type costSnapshot struct {
	at      time.Time
	samples map[string]procSample // by proc name
}

func snapshot(procs []proc) costSnapshot {
	s := costSnapshot{at: time.Now(), samples: map[string]procSample{}}
	for _, p := range procs {
		if ps, err := readProc(p.PID); err == nil {
			s.samples[p.Name] = ps
		}
	}
	return s
}

// Cost is what a measured phase cost the processes it counts.
type Cost struct {
	CPUSeconds   float64            `json:"cpu_seconds"`
	ByProcess    map[string]float64 `json:"cpu_seconds_by_process"`
	PeakRSSBytes int64              `json:"peak_rss_bytes"` // sum of the processes' high-water marks
	WallSeconds  float64            `json:"wall_seconds"`
	Processes    int                `json:"processes"`
}

// costBetween is the CPU the processes spent between two snapshots (processes seen in both).
func costBetween(before, after costSnapshot) Cost {
	c := Cost{ByProcess: map[string]float64{}, WallSeconds: after.at.Sub(before.at).Seconds()}
	for name, a := range after.samples {
		b, ok := before.samples[name]
		if !ok {
			continue
		}
		d := (a.CPU - b.CPU).Seconds()
		c.ByProcess[name] = d
		c.CPUSeconds += d
		c.PeakRSSBytes += a.PeakRSS
		c.Processes++
	}
	return c
}

// listenerPID finds the process listening on a local TCP port, through the socket inode in
// /proc/net/tcp{,6} and the fd links of every process. 0 when none is found (another user's
// process, or a port forwarded into a container).
func listenerPID(port int) int {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, ino := range listeningInodes(data, port) {
			inodes[ino] = true
		}
	}
	if len(inodes) == 0 {
		return 0
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*/fd")
	for _, d := range dirs {
		fds, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(d, fd.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			if inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
				return pid
			}
		}
	}
	return 0
}

// listeningInodes returns the inodes of sockets in state LISTEN (0A) on port in a
// /proc/net/tcp table.
func listeningInodes(table []byte, port int) []string {
	var out []string
	want := fmt.Sprintf(":%04X", port)
	for i, line := range bytes.Split(table, []byte("\n")) {
		f := strings.Fields(string(line))
		if i == 0 || len(f) < 10 {
			continue
		}
		if strings.HasSuffix(f[1], want) && f[3] == "0A" {
			out = append(out, f[9])
		}
	}
	return out
}

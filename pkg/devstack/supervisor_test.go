package devstack

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLineWriterPrefixesWholeLines(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	s := &Supervisor{width: 15}
	tl := newTail(2)
	w := &lineWriter{s: s, dst: &out, prefix: s.prefix("gateway-daprd"), tail: tl}
	for _, chunk := range []string{"first li", "ne\r\nsecond\nthi", "rd"} {
		if _, err := io.WriteString(w, chunk); err != nil {
			t.Fatal(err)
		}
	}
	w.flush()
	want := "gateway-daprd  | first line\ngateway-daprd  | second\ngateway-daprd  | third\n"
	if got := out.String(); got != want {
		t.Errorf("output\n%q\nwant\n%q", got, want)
	}
	if got := tl.quote("gateway-daprd"); !strings.Contains(got, "last 2 lines of gateway-daprd:\n    second\n    third") {
		t.Errorf("tail = %q", got)
	}
}

func TestSupervisorProcesses(t *testing.T) {
	t.Parallel()
	closed, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		// script runs under sh -c as the only child.
		script string
		ready  []ReadyCheck
		// check gets the Start error and the supervisor after the child started.
		check func(t *testing.T, startErr error, s *Supervisor)
	}{
		{
			name:   "wait reports an unexpected exit with status and output",
			script: "echo bye; exit 3",
			check: func(t *testing.T, startErr error, s *Supervisor) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				err := s.Wait(ctx)
				for _, want := range []string{"child exited unexpectedly", "exit status 3", "bye"} {
					if err == nil || !strings.Contains(err.Error(), want) {
						t.Errorf("Wait = %v, want it to mention %q", err, want)
					}
				}
			},
		},
		{
			name:   "readiness timeout names the check and quotes the output",
			script: "echo booting; exec sleep 300",
			ready:  []ReadyCheck{{Name: "child-port", URL: "tcp://127.0.0.1:" + strconv.Itoa(closed)}},
			check: func(t *testing.T, startErr error, s *Supervisor) {
				for _, want := range []string{"not ready", "child-port", "connection refused", "booting"} {
					if startErr == nil || !strings.Contains(startErr.Error(), want) {
						t.Errorf("start error = %v, want it to mention %q", startErr, want)
					}
				}
			},
		},
		{
			name:   "stop kills grandchildren and processes that ignore SIGTERM",
			script: "trap '' TERM; sleep 300 & sleep 300 & echo started; wait",
			check: func(t *testing.T, startErr error, s *Supervisor) {
				if startErr != nil {
					t.Fatal(startErr)
				}
				pgid := s.Processes()[0].PID
				waitFor(t, func() bool { return len(groupMembers(t, pgid)) >= 3 })
				if err := s.Stop(); err != nil {
					t.Fatal(err)
				}
				if left := groupMembers(t, pgid); len(left) > 0 {
					t.Errorf("left in the process group: %v", left)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				if err := s.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Wait after Stop = %v, want no failure", err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := NewSupervisor(&Plan{OutDir: t.TempDir()}, SupervisorOptions{
				Output:       func(string) io.Writer { return io.Discard },
				ReadyTimeout: 500 * time.Millisecond,
				StopGrace:    300 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Stop() })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			startErr := s.StartProcess(ctx, ProcessSpec{Name: "child", Path: "/bin/sh", Args: []string{"-c", tt.script}, Ready: tt.ready})
			tt.check(t, startErr, s)
		})
	}
}

// groupMembers lists the live processes of process group pgid.
func groupMembers(t *testing.T, pgid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		// state ppid pgrp; a zombie is already dead.
		if len(fields) > 2 && fields[2] == strconv.Itoa(pgid) && fields[0] != "Z" {
			out = append(out, pid)
		}
	}
	return out
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

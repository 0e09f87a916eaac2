//go:build linux

package devstack

import "syscall"

// sysProcAttr puts the child in its own process group, so that it and everything it forks can
// be signalled at once, and asks the kernel to kill it if the launcher dies without Stop
// (Pdeathsig; see startChild for the thread it is tied to).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

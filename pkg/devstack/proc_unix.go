//go:build unix && !linux

package devstack

import "syscall"

// sysProcAttr puts the child in its own process group, so that it and everything it forks can
// be signalled at once.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

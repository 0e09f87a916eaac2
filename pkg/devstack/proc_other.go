//go:build !unix

package devstack

import (
	"errors"
	"syscall"
)

// The supervisor relies on Unix process groups; elsewhere use the Dapr CLI (`dapr run -f`
// with the effective run file).
func sysProcAttr() *syscall.SysProcAttr { return nil }

func signalGroup(int, syscall.Signal) error {
	return errors.New("devstack: process groups are not supported on this platform")
}

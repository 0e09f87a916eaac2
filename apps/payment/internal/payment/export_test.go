package payment

import (
	"context"
	"time"
)

// Test hooks for the external test package (which may import paymenttest; this package's own
// tests could not without an import cycle).

func SetNow(s *Service, now func() time.Time)                               { s.now = now }
func SetNewID(s *Service, newID func() string)                              { s.newID = newID }
func SetRoll(s *Service, roll func() float64)                               { s.roll = roll }
func SetSleep(s *Service, sleep func(context.Context, time.Duration) error) { s.sleep = sleep }

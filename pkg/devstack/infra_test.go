package devstack

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
)

func TestRabbitAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		md          map[string]string
		wantAddr    string
		wantDisplay string
		wantErr     bool
	}{
		{"connection string", map[string]string{"connectionString": "amqp://guest:guest@127.0.0.1:5672/"}, "127.0.0.1:5672", "amqp://guest:xxxxx@127.0.0.1:5672/", false},
		{"legacy host, default port", map[string]string{"host": "amqp://localhost"}, "localhost:5672", "amqp://localhost", false},
		{"amqps default port", map[string]string{"connectionString": "amqps://mq.example"}, "mq.example:5671", "amqps://mq.example", false},
		{"hostname field", map[string]string{"hostname": "127.0.0.1:5673"}, "127.0.0.1:5673", "amqp://127.0.0.1:5673", false},
		{"nothing", map[string]string{}, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr, display, err := rabbitAddress(tt.md)
			if (err != nil) != tt.wantErr || addr != tt.wantAddr || display != tt.wantDisplay {
				t.Errorf("rabbitAddress = %q, %q, %v; want %q, %q, error %v", addr, display, err, tt.wantAddr, tt.wantDisplay, tt.wantErr)
			}
		})
	}
}

func TestCheckDependencies(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	closed, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	up := Dependency{Kind: DependencyRedis, Addr: l.Addr().String(), Display: l.Addr().String(), Components: []string{"statestore"}}
	down := Dependency{Kind: DependencyRabbitMQ, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(closed)), Display: "amqp://127.0.0.1", Components: []string{"pubsub"}}

	if err := CheckDependencies(context.Background(), []Dependency{up}); err != nil {
		t.Errorf("reachable dependency: %v", err)
	}
	err = CheckDependencies(context.Background(), []Dependency{up, down})
	var ue *UnreachableError
	if !errors.As(err, &ue) || ue.Dependency.Kind != DependencyRabbitMQ {
		t.Fatalf("error = %v, want an UnreachableError for rabbitmq", err)
	}
	for _, want := range []string{"rabbitmq at amqp://127.0.0.1", "components pubsub", "fix:", EnvRabbitMQURL} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

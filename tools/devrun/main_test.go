package main

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/pkg/devstack"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
		"GROUPBUY_REDIS_ADDR":         "127.0.0.1:6380",
	}
	tests := []struct {
		name    string
		args    []string
		want    config
		wantErr bool
	}{
		{
			name: "defaults",
			want: config{runFile: "dapr/dapr.yaml", outDir: ".run", cli: "auto", startInfra: true,
				readyTimeout: 2 * time.Minute, otlp: "http://127.0.0.1:4318", redisAddr: "127.0.0.1:6380"},
		},
		{
			name: "flags",
			args: []string{"-f", "x.yaml", "--port-offset", "100", "--out", "/tmp/o", "--cli", "never", "--apps", "gateway, catalog", "--start-infra=false"},
			want: config{runFile: "x.yaml", portOffset: 100, outDir: "/tmp/o", cli: "never", apps: []string{"gateway", "catalog"},
				readyTimeout: 2 * time.Minute, otlp: "http://127.0.0.1:4318", redisAddr: "127.0.0.1:6380"},
		},
		{name: "bad cli mode", args: []string{"--cli", "sometimes"}, wantErr: true},
		{name: "stray argument", args: []string{"extra"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseConfig(tt.args, func(k string) string { return env[k] }, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(config{})); diff != "" && !tt.wantErr {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInfraOverrides(t *testing.T) {
	t.Parallel()
	rf, err := devstack.LoadRunFile("../../dapr/dapr.yaml")
	if err != nil {
		t.Fatal(err)
	}
	md, appEnv, err := infraOverrides(rf, config{redisAddr: "10.1.1.1:6379", rabbitURL: "amqp://u:p@10.1.1.2:5672/"})
	if err != nil {
		t.Fatal(err)
	}
	// Every RabbitMQ component of components/ follows the override.
	wantMD := map[string]map[string]string{
		"statestore":       {"redisHost": "10.1.1.1:6379"},
		"pubsub":           {"connectionString": "amqp://u:p@10.1.1.2:5672/"},
		"pubsub-broadcast": {"connectionString": "amqp://u:p@10.1.1.2:5672/"},
	}
	for i := range 8 { // the order app's outbox relay components (components/pubsub-relay.yaml)
		wantMD[fmt.Sprintf("pubsub-relay-%d", i)] = map[string]string{"connectionString": "amqp://u:p@10.1.1.2:5672/"}
	}
	if diff := cmp.Diff(wantMD, md); diff != "" {
		t.Errorf("metadata overrides (-want +got):\n%s", diff)
	}
	// Only apps that talk to Redis themselves have REDIS_ADDR.
	if diff := cmp.Diff(map[string]map[string]string{"gateway": {"REDIS_ADDR": "10.1.1.1:6379"}}, appEnv); diff != "" {
		t.Errorf("app env (-want +got):\n%s", diff)
	}
}

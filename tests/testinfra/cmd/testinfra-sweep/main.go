// Command testinfra-sweep removes what crashed integration-test runs left on the local
// RabbitMQ (vhosts groupbuy-test-*) and Docker host (containers labelled
// groupbuy.testinfra.run). Redis claims expire by themselves; see package testinfra.
//
//	go run ./tests/testinfra/cmd/testinfra-sweep -older-than 6h [-dry-run]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/groupbuy/groupbuy/tests/testinfra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "testinfra-sweep:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("testinfra-sweep", flag.ContinueOnError)
	olderThan := fs.Duration("older-than", 6*time.Hour, "remove leftovers of runs that started longer ago than this; keep it above the longest test run")
	dryRun := fs.Bool("dry-run", false, "list leftovers without removing them")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	res, err := testinfra.Sweep(ctx, testinfra.SweepOptions{OlderThan: *olderThan, DryRun: *dryRun})
	verb := "removed"
	if *dryRun {
		verb = "would remove"
	}
	for _, v := range res.Vhosts {
		fmt.Printf("%s vhost %s\n", verb, v)
	}
	for _, c := range res.Containers {
		fmt.Printf("%s container %s\n", verb, c)
	}
	if res.DockerSkipped != "" {
		fmt.Printf("containers not checked: %s\n", res.DockerSkipped)
	}
	return err
}

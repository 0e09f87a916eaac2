package testinfra

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

// SweepOptions says what Sweep treats as a leftover.
type SweepOptions struct {
	// Options locates the services, as for Provision; Mode is ignored.
	Options
	// OlderThan is the age from which a run's vhost or containers count as left over by a
	// crashed run. Pick it longer than the longest test run: a live run's vhost is not
	// refreshed, so Sweep cannot tell it from a dead one.
	OlderThan time.Duration
	// DryRun lists the leftovers without removing them.
	DryRun bool
}

// SweepResult lists the leftovers Sweep removed (or found, with DryRun).
type SweepResult struct {
	Vhosts     []string
	Containers []string
	// DockerSkipped says why containers were not looked at (no daemon answers), if so.
	DockerSkipped string
}

// Sweep removes what crashed runs left behind: vhosts named groupbuy-test-<run id> on the local
// broker and containers labelled groupbuy.testinfra.run, when their run started more than
// OlderThan ago. Redis needs no sweeping: a crashed run's DB claim expires by itself at most
// LockTTL after its last refresh, and the next run to claim the DB flushes it before use.
func Sweep(ctx context.Context, opts SweepOptions) (SweepResult, error) {
	if opts.OlderThan <= 0 {
		return SweepResult{}, errors.New("testinfra: sweep: OlderThan must be positive")
	}
	o := opts.Options.withDefaults()
	cutoff := time.Now().Add(-opts.OlderThan)

	var res SweepResult
	var errs []error
	vhosts, err := sweepVhosts(ctx, o, cutoff, opts.DryRun)
	res.Vhosts = vhosts
	if err != nil {
		errs = append(errs, err)
	}
	if perr := pingDocker(ctx); perr != nil {
		res.DockerSkipped = perr.Error()
	} else {
		names, err := sweepContainers(ctx, cutoff, opts.DryRun)
		res.Containers = names
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("testinfra: sweep: %w", err)
	}
	return res, nil
}

func sweepVhosts(ctx context.Context, o Options, cutoff time.Time, dryRun bool) ([]string, error) {
	admins, _, err := brokerAdmins(o.RabbitURL, o.RabbitManagementURL)
	if err != nil {
		return nil, err
	}
	var (
		admin  vhostAdmin
		all    []string
		tried  []error
		listed bool
	)
	for _, a := range admins {
		if all, err = a.list(ctx); err == nil {
			admin, listed = a, true
			break
		}
		tried = append(tried, fmt.Errorf("%s: %w", a, err))
	}
	if !listed {
		return nil, fmt.Errorf("list rabbitmq vhosts: %w", errors.Join(tried...))
	}

	var swept []string
	var errs []error
	for _, v := range all {
		if !isStale(v, cutoff) {
			continue
		}
		if !dryRun {
			if err := admin.delete(ctx, v); err != nil {
				errs = append(errs, fmt.Errorf("delete vhost %s: %w", v, err))
				continue
			}
		}
		swept = append(swept, v)
	}
	return swept, errors.Join(errs...)
}

// isStale reports whether vhost is one of ours whose run started before cutoff. Names that
// merely share the prefix are left alone.
func isStale(vhost string, cutoff time.Time) bool {
	runID, ok := strings.CutPrefix(vhost, vhostPrefix)
	if !ok {
		return false
	}
	started, ok := runStarted(runID)
	return ok && started.Before(cutoff)
}

func sweepContainers(ctx context.Context, cutoff time.Time, dryRun bool) ([]string, error) {
	cli, err := dockerClient(ctx)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", labelRun))})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var swept []string
	var errs []error
	for _, c := range list {
		started, ok := runStarted(c.Labels[labelRun])
		if !ok || !started.Before(cutoff) {
			continue
		}
		name := c.ID[:12]
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		if !dryRun {
			if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
				errs = append(errs, fmt.Errorf("remove container %s: %w", name, err))
				continue
			}
		}
		swept = append(swept, name)
	}
	return swept, errors.Join(errs...)
}

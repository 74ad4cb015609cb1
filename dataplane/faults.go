package dataplane

import (
	"context"
	"errors"
	"fmt"

	"github.com/flotilla-ci/flotilla/mesh"
)

// validateFaults checks the snapshot's faults: each valid, named once,
// and on services the snapshot has.
func validateFaults(faults []mesh.Fault, services map[string]bool) error {
	var errs []error
	ids := map[string]bool{}
	for i, f := range faults {
		if err := f.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("faults[%d]: %w", i, err))
			continue
		}
		if ids[f.ID] {
			errs = append(errs, fmt.Errorf("faults[%d]: id %s listed twice", i, f.ID))
		}
		ids[f.ID] = true
		if !services[f.Destination] {
			errs = append(errs, fmt.Errorf("faults[%d] (%s): destination %q is not among the snapshot's services", i, f.ID, f.Destination))
		}
		if f.Kind == mesh.FaultPartition && !services[f.Source] {
			errs = append(errs, fmt.Errorf("faults[%d] (%s): source %q is not among the snapshot's services", i, f.ID, f.Source))
		}
	}
	return errors.Join(errs...)
}

// SetFaults replaces the faults the mesh injects (nil: none).
func (c *Client) SetFaults(ctx context.Context, faults []mesh.Fault) error {
	_, err := c.change(ctx, func(next *Snapshot) error {
		next.Faults = append([]mesh.Fault(nil), faults...)
		return nil
	})
	return err
}

// Faults returns the faults of the desired state.
func (c *Client) Faults() []mesh.Fault {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]mesh.Fault(nil), c.desired.Faults...)
}

package controlplane

import (
	"context"
	"net/http"
	"net/url"
)

// BeginExperiment starts an experiment (POST /api/experiments); a 409
// (errors.Is deploy.ErrBusy) while another runs.
func (c *Client) BeginExperiment(ctx context.Context, req ExperimentRequest) (*Experiment, error) {
	var out struct {
		Experiment *Experiment `json:"experiment"`
	}
	if err := c.getJSON(ctx, http.MethodPost, "/api/experiments", req, &out); err != nil {
		return nil, err
	}
	return out.Experiment, nil
}

// RenewExperiment extends the experiment's lease.
func (c *Client) RenewExperiment(ctx context.Context, id string) (*Experiment, error) {
	var out struct {
		Experiment *Experiment `json:"experiment"`
	}
	if err := c.getJSON(ctx, http.MethodPost, "/api/experiments/"+url.PathEscape(id)+"/renew", nil, &out); err != nil {
		return nil, err
	}
	return out.Experiment, nil
}

// EndExperiment ends the experiment, removing its faults.
func (c *Client) EndExperiment(ctx context.Context, id string) ([]*ActiveFault, error) {
	var out struct {
		Removed []*ActiveFault `json:"removed"`
	}
	err := c.getJSON(ctx, http.MethodDelete, "/api/experiments/"+url.PathEscape(id), nil, &out)
	return out.Removed, err
}

// InjectFault injects one fault of the running experiment.
func (c *Client) InjectFault(ctx context.Context, req FaultRequest) (*ActiveFault, error) {
	var out struct {
		Fault *ActiveFault `json:"fault"`
	}
	if err := c.getJSON(ctx, http.MethodPost, "/api/faults", req, &out); err != nil {
		return nil, err
	}
	return out.Fault, nil
}

// RemoveFault removes one fault.
func (c *Client) RemoveFault(ctx context.Context, id string) error {
	var out map[string]any
	return c.getJSON(ctx, http.MethodDelete, "/api/faults/"+url.PathEscape(id), nil, &out)
}

// Faults lists the experiment and the faults in force.
func (c *Client) Faults(ctx context.Context) (*FaultsResponse, error) {
	var out FaultsResponse
	if err := c.getJSON(ctx, http.MethodGet, "/api/faults", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// StopFaults removes every fault and ends the experiment.
func (c *Client) StopFaults(ctx context.Context) ([]*ActiveFault, error) {
	var out struct {
		Removed []*ActiveFault `json:"removed"`
	}
	err := c.getJSON(ctx, http.MethodDelete, "/api/faults", nil, &out)
	return out.Removed, err
}

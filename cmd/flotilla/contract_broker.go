package main

import "github.com/spf13/cobra"

// contractBrokerCmds returns the `flotilla contract` subcommands that talk
// to a contract broker (publish, can-i-deploy, record-deployment, ...).
func (a *app) contractBrokerCmds() []*cobra.Command {
	return nil
}

//go:build !linux

package local

import "os"

// collapsible is 0: only Linux collapses a range of a file in place, so
// elsewhere rotation copies and truncates.
func collapsible(os.FileInfo) int64 { return 0 }

func collapse(*os.File, int64) error { return errNoCollapse }

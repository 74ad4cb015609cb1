package supervise

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// Alive reports whether the process pid runs: it exists and is not a
// zombie (an exited process whose new parent, after the one that started
// it died, has not reaped it yet).
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// The state is the field after the ")" that ends the command name.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'Z' {
			return false
		}
	}
	return true
}

// Identity is what tells one process from another that later got the
// same pid: its start time in clock ticks since boot, the boot, its
// executable and its arguments. Fields are empty where the system does
// not say (no /proc): the check then trusts what it can read.
type Identity struct {
	StartTicks uint64   `json:"start_ticks,omitempty"`
	BootID     string   `json:"boot_id,omitempty"`
	Exe        string   `json:"exe,omitempty"`
	Argv       []string `json:"argv,omitempty"`
}

// identify reads the identity of a running process.
func identify(pid int) (Identity, error) {
	var id Identity
	if runtime.GOOS != "linux" {
		return id, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return id, fmt.Errorf("process %d: %w", pid, err)
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return id, fmt.Errorf("process %d: unreadable /proc/%d/stat", pid, pid)
	}
	// Fields after the command name start at field 3 (state); the start
	// time is field 22.
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return id, fmt.Errorf("process %d: short /proc/%d/stat", pid, pid)
	}
	if id.StartTicks, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return id, fmt.Errorf("process %d: start time %q: %w", pid, f[19], err)
	}
	id.BootID = bootID()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return id, fmt.Errorf("process %d: %w", pid, err)
	}
	// A binary replaced on disk (an upgrade) shows as "path (deleted)":
	// the process still runs the program it was started as.
	id.Exe = strings.TrimSuffix(exe, " (deleted)")
	cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return id, fmt.Errorf("process %d: %w", pid, err)
	}
	id.Argv = strings.Split(strings.TrimSuffix(string(cl), "\x00"), "\x00")
	return id, nil
}

func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// same reports whether got (read now) is the process want (recorded when
// it started), and if not, why.
func (want Identity) same(got Identity) (bool, string) {
	switch {
	case want.BootID != "" && got.BootID != "" && want.BootID != got.BootID:
		return false, "the machine rebooted since"
	case want.StartTicks != 0 && got.StartTicks != want.StartTicks:
		return false, fmt.Sprintf("it started at tick %d, the recorded process at %d (the pid was reused)", got.StartTicks, want.StartTicks)
	case want.Exe != "" && got.Exe != want.Exe:
		return false, fmt.Sprintf("it runs %s, not %s", got.Exe, want.Exe)
	case want.Argv != nil && got.Argv != nil && !equal(want.Argv, got.Argv):
		return false, fmt.Sprintf("its arguments are %q, not %q", got.Argv, want.Argv)
	}
	return true, ""
}

// Runs reports whether pid is alive and runs the program bin (so a reused
// pid is not mistaken for it). Where /proc is missing it trusts the pid.
func Runs(pid int, bin string) bool {
	if !Alive(pid) {
		return false
	}
	if runtime.GOOS != "linux" {
		return true
	}
	id, err := identify(pid)
	return err == nil && id.Exe == bin
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// signalGroup signals the process group pid leads (every platform process
// leads its own).
func signalGroup(pid int, sig syscall.Signal) {
	if pid <= 0 {
		return
	}
	_ = syscall.Kill(-pid, sig)
}

package local

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// DirIn is where `flotilla up` keeps the local target's data inside its
// data directory; `flotilla logs` reads the logs from there.
func DirIn(data string) string { return filepath.Join(data, "local") }

// LogFile is one version's log.
type LogFile struct {
	Version  string
	Path     string
	Modified time.Time
	Size     int64
}

// Logs lists the log files of a service in a target's data directory,
// most recently written first.
func Logs(dir, service string) ([]LogFile, error) {
	ents, err := os.ReadDir(filepath.Join(dir, "logs", service))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("logs of %s: %w", service, err)
	}
	var out []LogFile
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".log") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, LogFile{Version: strings.TrimSuffix(e.Name(), ".log"), Path: filepath.Join(dir, "logs", service, e.Name()), Modified: info.ModTime(), Size: info.Size()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Modified.After(out[j].Modified) })
	return out, nil
}

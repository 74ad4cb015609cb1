// Command graphorder times `flotilla graph order` end to end through the CLI
// on a random DAG of 10,000 services and 50,000 dependencies, side by side
// with the scenario's own Python deploy-order script on the same file, and
// prints both times and their ratio. The script runs under the real
// interpreter, never a version manager's shim (see python3), and the
// benchmark prints which.
//
//	go run ./bench/graphorder [-services 10000] [-edges 50000] [-runs 7]
//
// flotilla's answer is checked first (every service once, each in the
// wave one past its deepest dependency). Each side runs -runs times after one warm-up; the median wall-clock time
// is reported (the minimum too), and the median CPU time (user+system),
// which stays meaningful on a machine busy with other work. flotilla's time includes process start, reading and
// validating the graph (cycles, consumer lists) and computing the waves.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "graphorder:", err)
		os.Exit(1)
	}
}

func run() error {
	services := flag.Int("services", 10000, "services in the random graph")
	edges := flag.Int("edges", 50000, "dependencies in the random graph")
	runs := flag.Int("runs", 7, "timed runs of each side")
	write := flag.String("write", "", "only write the random graph to this file (for profiling), then exit")
	flag.Parse()
	if *write != "" {
		_, err := writeGraph(*write, *services, *edges)
		return err
	}

	dir, err := os.MkdirTemp("", "graphorder")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()

	graphFile := filepath.Join(dir, "dependency-graph.json")
	deps, err := writeGraph(graphFile, *services, *edges)
	if err != nil {
		return err
	}
	bin := filepath.Join(dir, "flotilla")
	build := exec.Command("go", "build", "-o", bin, "./cmd/flotilla")
	build.Dir = repoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build flotilla: %w\n%s", err, out)
	}
	st, _ := os.Stat(graphFile)
	fmt.Printf("graph: %d services, %d dependencies (%d KiB JSON); %d runs each, median (min)\n", *services, *edges, st.Size()/1024, *runs)
	fmt.Printf("machine: %s/%s, %d CPUs\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU())

	flotilla := []string{bin, "graph", "order", "-f", graphFile, "-o", "json"}
	if err := checkOrder(flotilla, deps); err != nil {
		return err
	}
	py, how, err := python3()
	if err != nil {
		fl, err := timeRuns(*runs, flotilla)
		if err != nil {
			return err
		}
		fmt.Printf("%-32s %10s %10s %10s\n", "", "wall", "(min)", "cpu")
		fmt.Printf("%-32s %7.1f ms %7.1f ms %7.1f ms\n", "flotilla graph order -o json", ms(fl[0].median), ms(fl[0].min), ms(fl[0].cpu))
		fmt.Println("python3 is not installed: the scenario's script was not run, no ratio (install python3 to compare)")
		return nil
	}
	fmt.Printf("python: %s (%s)\n", py, how)
	script := filepath.Join(repoRoot(), "bench", "graphorder", "calculate-deploy-order.py")
	// The two sides take turns, so both see the same load on a shared
	// machine.
	ts, err := timeRuns(*runs, flotilla, []string{py, script, graphFile})
	if err != nil {
		return err
	}
	fl, pt := ts[0], ts[1]
	fmt.Printf("%-32s %10s %10s %10s\n", "", "wall", "(min)", "cpu")
	fmt.Printf("%-32s %7.1f ms %7.1f ms %7.1f ms\n", "flotilla graph order -o json", ms(fl.median), ms(fl.min), ms(fl.cpu))
	fmt.Printf("%-32s %7.1f ms %7.1f ms %7.1f ms\n", "calculate-deploy-order.py", ms(pt.median), ms(pt.min), ms(pt.cpu))
	fmt.Printf("ratio: flotilla is %.1fx faster than the scenario's script (wall median; %.1fx by min, %.1fx by CPU time; target: under 150 ms and at least 5x)\n",
		float64(pt.median)/float64(fl.median), float64(pt.min)/float64(fl.min), float64(pt.cpu)/float64(fl.cpu))
	if ms(fl.median) > 150 {
		fmt.Println("NOTE: flotilla took longer than the 150 ms target")
	}
	return nil
}

// python3 finds the interpreter the way a user runs the script, minus
// wrappers: /usr/bin/python3 when it exists; otherwise python3 on the PATH,
// with a version manager's shim (pyenv's adds ~0.3 s to every start) resolved
// to the interpreter it would run, and symlinks followed. how says which.
func python3() (path, how string, err error) {
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		real, err := filepath.EvalSymlinks("/usr/bin/python3")
		if err != nil {
			return "", "", err
		}
		return real, "/usr/bin/python3, the system interpreter", nil
	}
	p, err := exec.LookPath("python3")
	if err != nil {
		return "", "", err
	}
	how = "python3 on the PATH"
	if strings.Contains(filepath.ToSlash(p), "/shims/") {
		out, err := exec.Command("pyenv", "which", "python3").Output()
		if err != nil {
			return "", "", fmt.Errorf("%s is a pyenv shim and 'pyenv which python3' failed: %w", p, err)
		}
		p = strings.TrimSpace(string(out))
		how = "the interpreter pyenv's shim runs ('pyenv which python3'), without the shim"
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", "", err
	}
	return real, how, nil
}

// timing holds wall-clock and CPU (user+system) times of the runs.
type timing struct{ median, min, cpu time.Duration }

// timeRuns runs each command once to warm caches, then runs them in turn
// runs times, checking that every run succeeds and prints something.
func timeRuns(runs int, cmds ...[]string) ([]timing, error) {
	walls := make([][]time.Duration, len(cmds))
	cpus := make([][]time.Duration, len(cmds))
	for i := 0; i <= runs; i++ {
		for k, argv := range cmds {
			cmd := exec.Command(argv[0], argv[1:]...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			start := time.Now()
			out, err := cmd.Output()
			d := time.Since(start)
			if err != nil {
				return nil, fmt.Errorf("%s: %w: %s", filepath.Base(argv[0]), err, stderr.String())
			}
			if len(out) == 0 {
				return nil, fmt.Errorf("%s printed nothing", filepath.Base(argv[0]))
			}
			if i > 0 {
				walls[k] = append(walls[k], d)
				cpus[k] = append(cpus[k], cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
			}
		}
	}
	out := make([]timing, len(cmds))
	for k := range cmds {
		slices.Sort(walls[k])
		slices.Sort(cpus[k])
		out[k] = timing{median: walls[k][len(walls[k])/2], min: walls[k][0], cpu: cpus[k][len(cpus[k])/2]}
	}
	return out, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// checkOrder runs flotilla once and checks its answer before it is timed:
// every service once, each after all its dependencies, and each wave one
// past its deepest dependency.
func checkOrder(argv []string, deps [][]int) error {
	out, err := exec.Command(argv[0], argv[1:]...).Output()
	if err != nil {
		return fmt.Errorf("flotilla: %w", err)
	}
	var got struct {
		Order []string   `json:"order"`
		Waves [][]string `json:"waves"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		return fmt.Errorf("flotilla's output: %w", err)
	}
	if len(got.Order) != len(deps) {
		return fmt.Errorf("flotilla ordered %d services, want %d", len(got.Order), len(deps))
	}
	wave := map[string]int{}
	for k, w := range got.Waves {
		for _, s := range w {
			wave[s] = k
		}
	}
	for a, ds := range deps {
		want := 0
		for _, b := range ds {
			want = max(want, wave[name(b)]+1)
		}
		if w, ok := wave[name(a)]; !ok || w != want {
			return fmt.Errorf("flotilla put %s in wave %d, its dependencies say %d", name(a), w, want)
		}
	}
	return nil
}

func name(i int) string { return fmt.Sprintf("svc-%05d", i) }

// writeGraph writes a random DAG in the scenario's format: service i may
// depend only on services with a lower index, so there is no cycle, and the
// consumers lists agree with the dependencies, so there are no warnings.
func writeGraph(path string, n, edges int) ([][]int, error) {
	if edges > n*(n-1)/2 {
		return nil, fmt.Errorf("%d edges do not fit in a DAG of %d services", edges, n)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	deps := make([]map[int]bool, n)
	for i := range deps {
		deps[i] = map[int]bool{}
	}
	for e := 0; e < edges; {
		a, b := rng.IntN(n), rng.IntN(n)
		if a == b {
			continue
		}
		if a < b {
			a, b = b, a
		}
		if deps[a][b] {
			continue
		}
		deps[a][b] = true
		e++
	}
	type svc struct {
		Dependencies []string `json:"dependencies"`
		Consumers    []string `json:"consumers"`
	}
	out := struct {
		Services map[string]*svc `json:"services"`
	}{Services: map[string]*svc{}}
	for i := range n {
		out.Services[name(i)] = &svc{Dependencies: []string{}, Consumers: []string{}}
	}
	lists := make([][]int, n)
	for a, ds := range deps {
		keys := make([]int, 0, len(ds))
		for b := range ds {
			keys = append(keys, b)
		}
		slices.Sort(keys)
		lists[a] = keys
		for _, b := range keys {
			out.Services[name(a)].Dependencies = append(out.Services[name(a)].Dependencies, name(b))
			out.Services[name(b)].Consumers = append(out.Services[name(b)].Consumers, name(a))
		}
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, err
	}
	return lists, os.WriteFile(path, data, 0o644)
}

// repoRoot finds the module root (where go.mod is) from the working
// directory, so the benchmark runs from anywhere inside the repository.
func repoRoot() string {
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}

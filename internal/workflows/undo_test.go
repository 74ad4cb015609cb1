package workflows

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
)

// TestDeployServiceUndoesOnlyItsOwnRollout runs the deploy job of
// deploy-service.yml on paper, once per step that can fail, evaluating each
// step's if: as the runner does, and checks when "rollout undo" runs. It
// must run when the new image was set and then failed (not ready, smoke
// test failed); it must not run when nothing was changed yet (the build,
// kubectl's configuration or set image itself failed): undoing then would
// roll the serving version back to the one before it.
func TestDeployServiceUndoesOnlyItsOwnRollout(t *testing.T) {
	file := filepath.Join(repoRoot, ".github", "workflows", "deploy-service.yml")
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	wf, errs := actionlint.Parse(src)
	if len(errs) > 0 {
		t.Fatalf("parse %s: %v", file, errs[0])
	}
	job := wf.Jobs["deploy"]
	if job == nil {
		t.Fatalf("%s has no deploy job", file)
	}
	const undo = "Undo this service's rollout"
	wantUndo := map[string]bool{
		"Build the service":        false,
		"Build and push the image": false,
		"Configure kubectl":        false,
		"Roll out":                 false,
		"Wait for readiness":       true,
		"Smoke test":               true,
	}
	names := map[string]bool{}
	for _, s := range job.Steps {
		names[stepName(s)] = true
	}
	for name := range wantUndo {
		if !names[name] {
			t.Fatalf("%s has no step %q: update this test with the workflow", file, name)
		}
	}
	if !names[undo] {
		t.Fatalf("%s has no step %q", file, undo)
	}
	for failing, want := range wantUndo {
		ran, err := simulate(job.Steps, failing)
		if err != nil {
			t.Fatalf("%s fails: %v", failing, err)
		}
		if got := ran[undo]; got != want {
			t.Errorf("when %q fails, the undo step runs: %v, want %v", failing, got, want)
		}
	}
	ran, err := simulate(job.Steps, "")
	if err != nil {
		t.Fatal(err)
	}
	if ran[undo] {
		t.Errorf("the undo step runs when every step succeeds")
	}
}

func stepName(s *actionlint.Step) string {
	if s.Name != nil {
		return s.Name.Value
	}
	return ""
}

// simulate runs steps in order: every step run succeeds except the one
// named failing. It returns which steps ran.
func simulate(steps []*actionlint.Step, failing string) (map[string]bool, error) {
	ran := map[string]bool{}
	outcomes := map[string]string{} // step id -> outcome
	failed := false
	for _, s := range steps {
		cond := "success()"
		if s.If != nil && strings.TrimSpace(s.If.Value) != "" {
			cond = s.If.Value
		}
		ok, err := evalIf(cond, failed, outcomes)
		if err != nil {
			return nil, fmt.Errorf("step %q: if: %s: %w", stepName(s), cond, err)
		}
		outcome := "skipped"
		if ok {
			ran[stepName(s)] = true
			outcome = "success"
			if failing != "" && stepName(s) == failing {
				outcome = "failure"
				failed = true
			}
		}
		if s.ID != nil {
			outcomes[s.ID.Value] = outcome
		}
	}
	return ran, nil
}

// evalIf evaluates a step's if: for the subset of GitHub's expressions a
// step condition uses: the status functions, steps.<id>.outcome and
// .conclusion, string and boolean literals, ==, !=, !, && and ||. A
// condition without a status function is implicitly success() && (...).
func evalIf(cond string, failed bool, outcomes map[string]string) (bool, error) {
	expr := strings.TrimSpace(cond)
	if strings.HasPrefix(expr, "${{") && strings.HasSuffix(expr, "}}") {
		expr = strings.TrimSpace(expr[3 : len(expr)-2])
	}
	node, perr := actionlint.NewExprParser().Parse(actionlint.NewExprLexer(expr + "}}"))
	if perr != nil {
		return false, perr
	}
	status := false
	var eval func(n actionlint.ExprNode) (any, error)
	eval = func(n actionlint.ExprNode) (any, error) {
		switch n := n.(type) {
		case *actionlint.FuncCallNode:
			status = true
			switch strings.ToLower(n.Callee) {
			case "success":
				return !failed, nil
			case "failure":
				return failed, nil
			case "always":
				return true, nil
			case "cancelled":
				return false, nil
			}
			return nil, fmt.Errorf("function %s() is not simulated", n.Callee)
		case *actionlint.ObjectDerefNode:
			inner, ok := n.Receiver.(*actionlint.ObjectDerefNode)
			if !ok {
				return nil, fmt.Errorf("%s is not simulated", n.Property)
			}
			v, ok := inner.Receiver.(*actionlint.VariableNode)
			if !ok || v.Name != "steps" || (n.Property != "outcome" && n.Property != "conclusion") {
				return nil, fmt.Errorf("only steps.<id>.outcome and .conclusion are simulated")
			}
			if o, ok := outcomes[inner.Property]; ok {
				return o, nil
			}
			return nil, nil
		case *actionlint.StringNode:
			return n.Value, nil
		case *actionlint.BoolNode:
			return n.Value, nil
		case *actionlint.NullNode:
			return nil, nil
		case *actionlint.NotOpNode:
			v, err := eval(n.Operand)
			return !truthy(v), err
		case *actionlint.LogicalOpNode:
			l, err := eval(n.Left)
			if err != nil {
				return nil, err
			}
			if (n.Kind == actionlint.LogicalOpNodeKindAnd) != truthy(l) {
				return l, nil
			}
			return eval(n.Right)
		case *actionlint.CompareOpNode:
			l, err := eval(n.Left)
			if err != nil {
				return nil, err
			}
			r, err := eval(n.Right)
			if err != nil {
				return nil, err
			}
			eq := strings.EqualFold(fmt.Sprint(l), fmt.Sprint(r))
			switch n.Kind {
			case actionlint.CompareOpNodeKindEq:
				return eq, nil
			case actionlint.CompareOpNodeKindNotEq:
				return !eq, nil
			}
		}
		return nil, fmt.Errorf("%T is not simulated", n)
	}
	v, err := eval(node)
	if err != nil {
		return false, err
	}
	if !status {
		return !failed && truthy(v), nil
	}
	return truthy(v), nil
}

func truthy(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case bool:
		return v
	case string:
		return v != ""
	}
	return true
}

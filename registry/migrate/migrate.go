// Package migrate copies subjects from one Confluent-compatible schema
// registry to another, keeping every schema's id and every version's
// number, so events already written (whose wire header carries the id)
// still decode against the new registry. Compatibility levels are copied
// too. It speaks only the Confluent REST API (through franz-go's sr
// client), so the source can be Confluent's registry, Apicurio's
// Confluent layer or another flotilla.
package migrate

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/sr"
)

// Options narrows what Copy copies.
type Options struct {
	// SubjectPrefix copies only subjects that start with it.
	SubjectPrefix string
}

// Report says what Copy did.
type Report struct {
	Subjects, Versions, Schemas int
	Levels                      int // subject levels copied (the global one included)
}

// Copy copies every live version of the source's subjects into dst, in id
// order (so referenced schemas come before those that use them), under
// IMPORT mode, which it sets on dst for the copy (forcing it when dst
// already has subjects) and resets to READWRITE afterwards. A version dst
// already holds with the same id is left as it is; one that conflicts
// stops the copy with an error naming it.
func Copy(ctx context.Context, src, dst *sr.Client, opts Options) (Report, error) {
	var rep Report
	subjects, err := src.Subjects(ctx)
	if err != nil {
		return rep, fmt.Errorf("source subjects: %w", err)
	}
	var all []sr.SubjectSchema
	var copied []string
	for _, s := range subjects {
		if !strings.HasPrefix(s, opts.SubjectPrefix) {
			continue
		}
		vs, err := src.Schemas(ctx, s)
		if err != nil {
			return rep, fmt.Errorf("source versions of %s: %w", s, err)
		}
		all = append(all, vs...)
		copied = append(copied, s)
	}
	sort.SliceStable(all, func(i, j int) bool {
		if all[i].ID != all[j].ID {
			return all[i].ID < all[j].ID
		}
		return all[i].Version < all[j].Version
	})

	if res := dst.SetMode(sr.WithParams(ctx, sr.Force), sr.ModeImport); res[0].Err != nil {
		return rep, fmt.Errorf("set IMPORT mode on the target: %w", res[0].Err)
	}
	defer func() {
		// Back to normal even when the copy failed half way.
		dst.SetMode(context.WithoutCancel(ctx), sr.ModeReadWrite)
	}()
	ids := map[int]bool{}
	for _, v := range all {
		s := v.Schema
		if _, err := dst.RegisterSchema(ctx, v.Subject, s, v.ID, v.Version); err != nil {
			return rep, fmt.Errorf("import %s version %d (id %d): %w", v.Subject, v.Version, v.ID, err)
		}
		rep.Versions++
		if !ids[v.ID] {
			ids[v.ID] = true
			rep.Schemas++
		}
	}
	rep.Subjects = len(copied)

	// Levels: the global one, then each subject's own (a subject without
	// one answers 40408 and keeps following the global level).
	if g := src.Compatibility(ctx); g[0].Err == nil {
		if res := dst.SetCompatibility(ctx, sr.SetCompatibility{Level: g[0].Level}); res[0].Err != nil {
			return rep, fmt.Errorf("set the global level: %w", res[0].Err)
		}
		rep.Levels++
	}
	for _, s := range copied {
		c := src.Compatibility(ctx, s)
		var re *sr.ResponseError
		if errors.As(c[0].Err, &re) && (re.ErrorCode == 40408 || re.ErrorCode == 40401) {
			continue
		}
		if c[0].Err != nil {
			return rep, fmt.Errorf("level of %s: %w", s, c[0].Err)
		}
		if res := dst.SetCompatibility(ctx, sr.SetCompatibility{Level: c[0].Level}, s); res[0].Err != nil {
			return rep, fmt.Errorf("set the level of %s: %w", s, res[0].Err)
		}
		rep.Levels++
	}
	return rep, nil
}

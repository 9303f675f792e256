package check

import "fmt"

// ReadBack is an acknowledged write and what the store holds for its key at
// the write's revision, read after the final heal.
type ReadBack struct {
	Write
	Found  bool   `json:"found"`
	Got    string `json:"got,omitempty"`
	ModRev int64  `json:"got_mod_rev,omitempty"`
	// Err is set when the key could not be read back.
	Err string `json:"err,omitempty"`
}

// Durable checks that no acknowledged write was lost: reading the key at the
// acknowledged revision gives exactly that write (the value, modified at that
// revision), and an acknowledged delete leaves the key absent at its revision.
// Read-back errors make the check inconclusive unless a violation is found.
func Durable(rb []ReadBack) Result {
	const name = "no-lost-writes"
	var v violations
	errs := 0
	var firstErr string
	for _, r := range rb {
		switch {
		case r.Err != "":
			errs++
			if firstErr == "" {
				firstErr = fmt.Sprintf("%s at rev %d: %s", r.Key, r.Rev, r.Err)
			}
		case r.Delete && r.Found:
			v.addf("acknowledged delete of %s at rev %d (%s) lost: the key holds %q (mod rev %d) at that revision", r.Key, r.Rev, r.Source, r.Got, r.ModRev)
		case !r.Delete && !r.Found:
			v.addf("acknowledged put %s=%q at rev %d (%s) lost: the key is absent at that revision", r.Key, r.Value, r.Rev, r.Source)
		case !r.Delete && (r.Got != r.Value || r.ModRev != r.Rev):
			v.addf("acknowledged put %s=%q at rev %d (%s) lost: the key holds %q, modified at rev %d", r.Key, r.Value, r.Rev, r.Source, r.Got, r.ModRev)
		}
	}
	res := v.result(name, fmt.Sprintf("%d acknowledged writes read back", len(rb)))
	if res.Status == Pass && errs > 0 {
		res.Status = Inconclusive
		res.Detail = fmt.Sprintf("%d of %d acknowledged writes could not be read back; first: %s", errs, len(rb), firstErr)
	}
	return res
}

package check

import "testing"

func TestDurable(t *testing.T) {
	ok := []ReadBack{
		{Write: Write{Key: "x", Value: "a", Rev: 2}, Found: true, Got: "a", ModRev: 2},
		{Write: Write{Key: "x", Delete: true, Rev: 3}},
	}
	wantStatus(t, Durable(ok), Pass)

	for name, rb := range map[string]ReadBack{
		"lost put":                {Write: Write{Key: "x", Value: "a", Rev: 2}},
		"overwritten put":         {Write: Write{Key: "x", Value: "a", Rev: 2}, Found: true, Got: "b", ModRev: 2},
		"put at another revision": {Write: Write{Key: "x", Value: "a", Rev: 4}, Found: true, Got: "a", ModRev: 2},
		"lost delete":             {Write: Write{Key: "x", Delete: true, Rev: 3}, Found: true, Got: "a", ModRev: 2},
	} {
		t.Run(name, func(t *testing.T) {
			wantStatus(t, Durable(append(ok, rb)), Fail)
		})
	}
	wantStatus(t, Durable(append(ok, ReadBack{Write: Write{Key: "y", Value: "v", Rev: 9}, Err: "unavailable"})), Inconclusive)
}

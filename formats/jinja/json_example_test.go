package jinja_test

import (
	"fmt"

	"github.com/gptqtool/gptqtool/formats/jinja"
)

func ExampleFromJSON() {
	args, err := jinja.FromJSON([]byte(`{"city": "Paris", "days": 3, "ratio": 0.5}`), true)
	if err != nil {
		panic(err)
	}
	tpl, err := jinja.Parse(`{{ args | tojson }} {{ args.days + 1 }}`)
	if err != nil {
		panic(err)
	}
	chunks, err := tpl.Render(map[string]any{"args": args})
	if err != nil {
		panic(err)
	}
	for _, c := range chunks {
		fmt.Print(c.Text)
	}
	fmt.Println()
	// Output: {"city": "Paris", "days": 3, "ratio": 0.5} 4
}

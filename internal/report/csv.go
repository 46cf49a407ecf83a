package report

import (
	"bytes"
	"encoding/csv"
	"strconv"
	"strings"
)

func planCSV(buf *bytes.Buffer, p *Plan) error {
	w := csv.NewWriter(buf)
	_ = w.Write([]string{"index", "id", "group", "engine", "width", "height", "steps", "samples", "credits", "usd"})
	for _, j := range p.Jobs {
		_ = w.Write([]string{strconv.Itoa(j.Index), j.ID, j.Group, j.Engine, strconv.Itoa(j.Width), strconv.Itoa(j.Height),
			strconv.Itoa(j.Steps), strconv.Itoa(j.Samples), j.Credits.String(), j.Credits.USD()})
	}
	w.Flush()
	return w.Error()
}

func runCSV(buf *bytes.Buffer, r *Run) error {
	w := csv.NewWriter(buf)
	_ = w.Write([]string{"index", "id", "group", "engine", "width", "height", "steps", "samples", "status", "resumed",
		"attempts", "credits", "usd", "error", "images"})
	for _, j := range r.Jobs {
		paths := make([]string, len(j.Images))
		for i, img := range j.Images {
			paths[i] = img.Path
		}
		_ = w.Write([]string{strconv.Itoa(j.Index), j.ID, j.Group, j.Engine, strconv.Itoa(j.Width), strconv.Itoa(j.Height),
			strconv.Itoa(j.Steps), strconv.Itoa(j.Samples), j.Status, strconv.FormatBool(j.Resumed),
			strconv.Itoa(j.Attempts), j.Credits.String(), j.Credits.USD(), j.Error, strings.Join(paths, ";")})
	}
	w.Flush()
	return w.Error()
}

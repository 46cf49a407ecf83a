package report

import (
	"strconv"
)

// appendRunJob appends j's JSON, byte for byte as json.Marshal writes it,
// without reflection, as appendPlanJob does for a plan's job: report.json
// of a run of millions of jobs is mostly this. TestRunJobJSON holds it to
// json.Marshal with every field set, so that a field added to RunJob
// without being added here fails.
func appendRunJob(b []byte, j *RunJob) []byte {
	b = append(b, `{"index":`...)
	b = strconv.AppendInt(b, int64(j.Index), 10)
	b = appendField(b, "id", j.ID)
	b = appendField(b, "group", j.Group)
	b = appendArray(b, "vars", j.Vars, func(b []byte, v Var) []byte {
		b = append(b, `{"key":`...)
		b = appendJSONString(b, v.Key)
		b = appendField(b, "value", v.Value)
		return append(b, '}')
	})
	b = appendArray(b, "depends_on", j.DependsOn, appendJSONString)
	b = appendRequest(b, jobRequest{j.Engine, j.Service, j.Model, j.Width, j.Height, j.Steps, j.AspectRatio, j.OutputFormat,
		j.Inputs, j.Prompt, j.NegativePrompt, j.Settings, j.Samples})
	b = appendField(b, "status", j.Status)
	b = appendOmitEmpty(b, "failure", j.Failure)
	b = append(b, `,"credits":`...)
	b = append(b, j.Credits.String()...) // Credits.MarshalJSON
	if j.PossiblyBilledCredits != 0 {
		b = append(b, `,"possibly_billed_credits":`...)
		b = append(b, j.PossiblyBilledCredits.String()...)
	}
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(j.Attempts), 10)
	if j.Resumed {
		b = append(b, `,"resumed":true`...)
	}
	if j.Cached {
		b = append(b, `,"cached":true`...)
	}
	b = appendOmitEmpty(b, "generation_id", j.GenerationID)
	b = appendOmitEmpty(b, "error", j.Error)
	b = appendOmitEmpty(b, "parameters", j.Params)
	b = append(b, `,"images":`...)
	if j.Images == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, img := range j.Images {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"path":`...)
			b = appendJSONString(b, img.Path)
			b = append(b, `,"seed":`...)
			b = strconv.AppendUint(b, uint64(img.Seed), 10)
			b = appendField(b, "finish_reason", img.FinishReason)
			b = appendField(b, "sha256", img.SHA256)
			b = appendOmitEmpty(b, "request_id", img.RequestID)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

package cost_test

import (
	"fmt"

	"github.com/batch-tool/batch/internal/cost"
)

func ExampleCredits() {
	c, err := cost.ParseCredits("0.200053")
	if err != nil {
		panic(err)
	}
	total := 3*c + 2*cost.Credit
	fmt.Println(total, total.Fixed(2), total.USD())
	// Output: 2.600159 2.60 $0.02600159
}

func ExampleSheet_ImagePrice() {
	for _, id := range []string{"dreamstudio-2022", "v1-2023", "sdxl-2024"} {
		s, err := cost.LookupSheet(id)
		if err != nil {
			panic(err)
		}
		price, err := s.ImagePrice("stable-diffusion-xl-1024-v1-0", 1024, 1024, 50)
		fmt.Println(id, price, err)
	}
	// Output:
	// dreamstudio-2022 9.4 <nil>
	// v1-2023 2.0 <nil>
	// sdxl-2024 1.5 <nil>
}

func ExampleSheet_ImagePrice_noPrice() {
	s, _ := cost.LookupSheet("sdxl-2024")
	_, err := s.ImagePrice("stable-diffusion-v1-5", 512, 512, 30)
	fmt.Println(err)
	// Output: no price for engine "stable-diffusion-v1-5" in sheet "sdxl-2024" (it prices stable-diffusion-xl-1024-v1-0, stable-diffusion-v1-6)
}

func ExampleCheckBudget() {
	fmt.Println(cost.CheckBudget(120*cost.Credit, 120*cost.Credit))
	fmt.Println(cost.CheckBudget(120*cost.Credit+1, 120*cost.Credit))
	// Output:
	// <nil>
	// over budget: estimate 120.000001 credits exceeds budget 120.0 credits
}

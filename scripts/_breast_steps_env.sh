# Sourced by the breast-model step scripts (cv5_a7_steps.sh, a7_student_steps.sh): where the data and the shipped
# models are, how Python and sonoseg are called (DATA and PYTHON override), and the two sources with their splits.
set -euo pipefail
data=${DATA:-../shared/data}
py=${PYTHON:-python}
sonoseg=("$py" -m sonoseg)
models=src/sonoseg/assets/models
split_files=(--split-file configs/busi_split.csv --split-file configs/bus_uclm_split.csv)
sources=(--dataset "$data/busi" --split-file configs/busi_split.csv
         --dataset "$data/bus_uclm" --split-file configs/bus_uclm_split.csv)

#!/usr/bin/env bash
# The CPU compute track (issue 10): an ablation ladder chosen on validation, then a final row.
# Every run is a plain `cifarbudget run` into results/cpu-track/runs; a finished run is skipped and
# an interrupted one resumes, so this script can be stopped and started again at any time.
#   bash results/cpu-track/run.sh ladder     # rows A-D, 45k train / 5k validation, seeds 0-2
#   bash results/cpu-track/run.sh resnet20   # row E: resnet20 at about the same compute, seeds 0-2
#   bash results/cpu-track/run.sh screen     # rows F-J: one change each to row D, seed 0 (SEEDS="0 1 2" for more)
#   bash results/cpu-track/run.sh screen2    # rows K-L: + identity init, + frozen whitening, seed 0
#   bash results/cpu-track/run.sh screen3    # rows M-P: K + batch 256 (+ frozen whitening, + Muon 0.3), K + batch 128
#   bash results/cpu-track/run.sh confirm    # rows K and N (best of F-P at seed 0), seeds 1 and 2
#   bash results/cpu-track/run.sh screen4    # round 3, rows Q-T: one change each to row N, seed 0
#   bash results/cpu-track/run.sh screen5    # round 4, rows U-Z: one change each to row N, seed 0
#   bash results/cpu-track/run.sh screen6    # round 5, rows AA-AC: N with narrower nets and more epochs, seed 0
#   bash results/cpu-track/run.sh confirm2   # row AB (best of U-AC at seed 0), seeds 1 and 2
#   bash results/cpu-track/run.sh confirm3   # row Q (round 3's best seed 0: N + 2-pixel crop), seeds 1 and 2
#   bash results/cpu-track/run.sh screen7    # round 6, rows AD-AG: row Q + progressive resizing, seed 0
#   bash results/cpu-track/run.sh confirm4   # rows AD and AF (best of AD-AG at seed 0), seeds 1 and 2
#   bash results/cpu-track/run.sh screen8    # round 7, rows AH-AJ: one change each to row Q, seed 0
#   bash results/cpu-track/run.sh confirm5   # row AH (1-pixel crop), seeds 1 and 2; row AK (no crop), seeds 0-2
#   bash results/cpu-track/run.sh screen9    # round 8, rows AL-AN: row AH with a stride-2 (patchify) stem, wider, seed 0
#   bash results/cpu-track/run.sh screen10   # round 9, rows AO-AR: one change each to row AH (airbench's fixed BN scales, lr, Muon wd), seed 0
#   bash results/cpu-track/run.sh confirm6   # rows AP and AQ (round 9's best seed 0: the SGD lr halved, doubled), seeds 1 and 2
#   bash results/cpu-track/run.sh screen11   # round 10, rows AS-AT: one change each to row AP (v6), seed 0: EMA off, a shorter warm-up
#   bash results/cpu-track/run.sh screen12   # round 10, rows AU-AV: row AP (v6) with SiLU (hiverge's) for GELU; with airbench's SGD momentum 0.85; seed 0
#   bash results/cpu-track/run.sh screen13   # round 11, row AW: row AP (v6) with airbench94-Muon's schedule (linear decay to zero, no warm-up), seed 0
#   bash results/cpu-track/run.sh screen14   # round 11, rows AX-AY: row AP (v6) with airbench94-Muon's filter normalisation (muon_lr 0.02, 0.04), seed 0
#   bash results/cpu-track/run.sh screen15   # round 11, rows AZ-BA: AX (normalised Muon) at muon_lr 0.01; at 0.02 with the linear decay to zero, seed 0
#   bash results/cpu-track/run.sh confirm8   # round 11: row BA (normalised Muon 0.02, linear decay), seeds 1 and 2; BB (the same at 0.03), seed 0; multicrop18 evaluations
#   bash results/cpu-track/run.sh confirm9   # round 11: row BB (normalised Muon 0.03, linear decay), seeds 1 and 2; BC (0.045), seed 0; multicrop18 evaluations
#   bash results/cpu-track/run.sh screen16   # round 12, rows BD-BF: one change each to row BA (v8), seed 0: no EMA, Muon momentum 0.6, batch 512
#   bash results/cpu-track/run.sh confirm10  # round 12: row BF (BA with batch 512, muon_lr 0.03), seeds 1 and 2
#   bash results/cpu-track/run.sh screen17   # round 12, rows BG-BI: one change each to row BA (v8), seed 0: muon_lr 0.025, a 0.3-epoch warm-up, EMA 0.995
#   bash results/cpu-track/run.sh screen18   # round 13, rows BJ-BK: row BA (v8) with SGD lr 0.1 and 0.3 for the head and norms, seed 0
#   bash results/cpu-track/run.sh screen19   # round 14, rows BL-BO: row BA (v8) with the classifier's SGD rate x4, x16, x64 (head_lr_scale), seed 0
#   bash results/cpu-track/run.sh confirm11  # round 14: row BL (head_lr_scale 4), seeds 1 and 2; BQ (x2), BR (x8), seed 0
#   bash results/cpu-track/run.sh ttaweight2 # row BA (v8), seeds 0-2, with multicrop18's translated views weighted 0.5 and 0.9 (no training)
#   bash results/cpu-track/run.sh confirm12  # round 14: row BQ (head_lr_scale 2), seeds 1 and 2
#   bash results/cpu-track/run.sh ttareduce  # row BA (v8), seeds 0-2, multicrop18 weight 0.75 averaging probabilities, not logits (no training)
#   bash results/cpu-track/run.sh round15    # round 15, rows BS-BU: one change each to row BA (v8), seeds 0-2: head weight decay x10, Muon momentum 0.9, 2-pixel crop
#   bash results/cpu-track/run.sh round16    # round 16, rows BV-BW: one change each to row BU (v9), seed 0 (stopped there): Muon with 3 Newton-Schulz steps, round 5's narrow net for 15 epochs
#   bash results/cpu-track/run.sh round16b   # round 16, row BX: row BU (v9) with batch 128 (twice the steps at the same compute), seed 0
#   bash results/cpu-track/run.sh round17    # round 17, rows BY-BZ: row BU (v9) with a wider net for fewer epochs (<= 30T at 50k), seed 0
#   bash results/cpu-track/run.sh round17b   # round 17, rows CA-CB: row BU (v9) with label smoothing 0.1 and 0.3, seed 0
#   bash results/cpu-track/run.sh confirm13  # round 17: row CA (label smoothing 0.1, the best seed 0 of round 17), seeds 1 and 2
#   bash results/cpu-track/run.sh reproduce  # NOT a track row: the recipe speedrun-cpu-v9, seed 0, trained again in a fresh checkout (another VM)
#   bash results/cpu-track/run.sh moreseeds  # NOT track rows: the recipe speedrun-cpu-v9 with seeds 5-9, after the protocol's five (0-4) were reported
#   bash results/cpu-track/run.sh confirm7   # rows AV and AS (round 10's best seed 0), seeds 1 and 2; then seeds 0-2 evaluated with multicrop18
#   bash results/cpu-track/run.sh ttaweight  # row AP (v6), seeds 0-2, with multicrop18's translated views weighted 0.25 and 0.75 (no training)
#   bash results/cpu-track/run.sh tta18      # rows AH and AP (seeds 0-2) evaluated with multicrop18 (no training)
#   bash results/cpu-track/run.sh gap        # NOT a track row: row N at 12 and 15 epochs (over 30T), seed 0
#   bash results/cpu-track/run.sh gap2       # NOT a track row: row AP (v6) at 12 and 15 epochs (over 30T), seed 0
#   bash results/cpu-track/run.sh final ARGS # the validation-best row, 5 seeds, all 50k images
# Data: CIFAR-10 (JPEG q75 copy), ../shared/data (imagefolder zips).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data}
OUT=results/cpu-track/runs
common=(--recipe speedrun-cpu --data-dir "$DATA" --results-dir "$OUT" --compute-budget 30T --quiet)
val=(--val-size 5000)
# B: airbench's init and optimizer details (whitening, BN-bias lr x64, no weight decay on norms),
#    the alternating flip and multi-crop TTA. The crop padding is 4 (the crop-flip default), not the
#    recipe's 2: these rows ran while an --aug-param replaced the recipe's crop-flip parameters
#    instead of adding to them; padding=4 is spelled out so the commands give the same run ids now.
airbench=(--model-param whiten=true --opt-param bn_bias_lr_scale=64 --opt-param norm_weight_decay=0
          --aug crop-flip+flip-alternating --aug-param crop-flip.flip=false --aug-param crop-flip.padding=4
          --tta multicrop)
# N, round 2's choice and the base of rounds 3-5: D + identity init, batch 256, fixed whitening filters
row_n=("${airbench[@]}" --optimizer muon --opt-param muon_lr=0.15 --model-param identity_init=true
       --batch-size 256 --model-param whiten_freeze=true)
row() {  # row NAME SEED ARGS...
    local name=$1 seed=$2; shift 2
    echo "== row $name seed $seed: cifarbudget run ${common[*]} --seed $seed $*"
    cifarbudget run "${common[@]}" --seed "$seed" "$@" || echo "row $name seed $seed exited $?"
}
case ${1:-ladder} in
ladder)
    for seed in 0 1 2; do  # seeds outermost: an interrupted ladder has every row at n seeds first
        row A "$seed" "${val[@]}"                                   # today's speedrun-cpu
        row A-multicrop "$seed" "${val[@]}" --tta multicrop         # A's training, TTA only (reused)
        row B "$seed" "${val[@]}" "${airbench[@]}"
        row C "$seed" "${val[@]}" "${airbench[@]}" --optimizer muon --opt-param muon_lr=0.05
        row D "$seed" "${val[@]}" "${airbench[@]}" --optimizer muon --opt-param muon_lr=0.15
    done ;;
screen)  # F-J: one seed each (seed 0), D's recipe with one change: width vs epochs at <= 30T, batch, lr
    d=("${val[@]}" "${airbench[@]}" --optimizer muon --opt-param muon_lr=0.15)
    for seed in ${SEEDS:-0}; do
        row F "$seed" "${d[@]}" --model-param 'widths=[40,80,160]' --epochs 6   # 31.9M MACs
        row G "$seed" "${d[@]}" --model-param 'widths=[48,96,192]' --epochs 4   # 44.4M MACs
        row H "$seed" "${d[@]}" --model-param 'widths=[24,48,96]' --epochs 15   # 13.0M MACs
        row I "$seed" "${d[@]}" --batch-size 256
        row J "$seed" "${d[@]}" --opt-param muon_lr=0.3
    done ;;
screen2)  # K-L: airbench's initialisation details on top of row D, seed 0 (SEEDS="0 1 2" for more)
    d=("${val[@]}" "${airbench[@]}" --optimizer muon --opt-param muon_lr=0.15)
    for seed in ${SEEDS:-0}; do
        row K "$seed" "${d[@]}" --model-param identity_init=true
        row L "$seed" "${d[@]}" --model-param identity_init=true --model-param whiten_freeze=true
    done ;;
screen3)  # M-P: row K (identity init) with the batch and Muon changes that helped alone, seed 0
    k=("${val[@]}" "${airbench[@]}" --optimizer muon --opt-param muon_lr=0.15 --model-param identity_init=true)
    for seed in ${SEEDS:-0}; do
        row M "$seed" "${k[@]}" --batch-size 256
        row N "$seed" "${k[@]}" --batch-size 256 --model-param whiten_freeze=true
        row O "$seed" "${k[@]}" --batch-size 256 --opt-param muon_lr=0.3
        row P "$seed" "${k[@]}" --batch-size 128
    done ;;
confirm)  # the two best one-seed rows on validation (K, N), seeds 1 and 2 (seed 0 is in screen2/3)
    k=("${val[@]}" "${airbench[@]}" --optimizer muon --opt-param muon_lr=0.15 --model-param identity_init=true)
    for seed in ${SEEDS:-1 2}; do
        row K "$seed" "${k[@]}"
        row N "$seed" "${k[@]}" --batch-size 256 --model-param whiten_freeze=true
    done ;;
screen4)  # Q-T (round 3): one change each to row N, seed 0 (SEEDS="1 2" for more)
    n=("${val[@]}" "${row_n[@]}")
    for seed in ${SEEDS:-0}; do
        row Q "$seed" "${n[@]}" --aug-param crop-flip.padding=2   # airbench's 2-pixel translation
        row R "$seed" "${n[@]}" --sched-param pct_start=0.23 --sched-param anneal_strategy=linear \
            --sched-param div_factor=5 --sched-param final_div_factor=2.857   # airbench's triangle
        row S "$seed" "${n[@]}" --opt-param muon_lr=0.24 --opt-param muon_momentum=0.6  # airbench94-muon's
        row T "$seed" "${n[@]}" --ema 0.995
    done ;;
screen5)  # U-Z (round 4): one change each to row N at <= 30T, seed 0 (SEEDS="1 2" for more)
    n=("${val[@]}" "${row_n[@]}")
    for seed in ${SEEDS:-0}; do
        row U "$seed" "${n[@]}" --model-param 'widths=[24,80,128]'  # compute moved to group 2: 21.43M MACs
        row V "$seed" "${n[@]}" --model-param 'widths=[24,72,144]'  # ... and to group 3: 20.99M MACs
        row W "$seed" "${n[@]}" --model-param stem=24 --epochs 8    # all 12 whitening filters (+-): 23.89M MACs
        row X "$seed" "${n[@]}" --label-smoothing 0.1
        row Y "$seed" "${n[@]}" --optimizer lookahead --opt-param base=muon   # k=5, alpha=0.5, EMA kept
        row Z "$seed" "${n[@]}" --opt-param linear=true                       # Muon on the head too
    done ;;
screen6)  # AA-AC (round 5): row N narrower, with the epochs the saved MACs buy at 50k (<= 30T), seed 0
    n=("${val[@]}" "${row_n[@]}")
    for seed in ${SEEDS:-0}; do
        row AA "$seed" "${n[@]}" --model-param 'widths=[24,64,128]' --epochs 11  # 18.04M MACs: 29.7T at 50k
        row AB "$seed" "${n[@]}" --model-param 'widths=[24,48,96]' --epochs 15   # 13.03M MACs (row H's net)
        row AC "$seed" "${n[@]}" --model-param 'widths=[24,48,128]' --epochs 13  # 14.94M MACs: 29.1T at 50k
    done ;;
confirm2)  # the best one-seed row of rounds 4-5 on validation (AB), seeds 1 and 2
    n=("${val[@]}" "${row_n[@]}")
    for seed in ${SEEDS:-1 2}; do
        row AB "$seed" "${n[@]}" --model-param 'widths=[24,48,96]' --epochs 15
    done ;;
confirm3)  # row Q, the best seed-0 row of round 3 (N with airbench's 2-pixel translation), seeds 1 and 2
    n=("${val[@]}" "${row_n[@]}")
    for seed in ${SEEDS:-1 2}; do
        row Q "$seed" "${n[@]}" --aug-param crop-flip.padding=2
    done ;;
screen7)  # AD-AG (round 6): row Q with progressive resizing (the first epochs at 24 or 28 pixels; training
          # compute counted at each epoch's size) and the epochs the saved MACs buy at 50k (<= 30T), seed 0
    q=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=2 --aug progressive-resize)
    for seed in ${SEEDS:-0}; do
        row AD "$seed" "${q[@]}" --aug-param progressive-resize.size=24 --aug-param progressive-resize.epochs=5 --epochs 11  # 28.3T at 50k
        row AE "$seed" "${q[@]}" --aug-param progressive-resize.size=24 --aug-param progressive-resize.epochs=7 --epochs 12  # 28.7T
        row AF "$seed" "${q[@]}" --aug-param progressive-resize.size=28 --aug-param progressive-resize.epochs=4 --epochs 10  # 28.8T
        row AG "$seed" "${q[@]}" --aug-param progressive-resize.size=24 --aug-param progressive-resize.epochs=3 --epochs 10  # 27.9T
    done ;;
confirm4)  # the two best seed-0 rows of round 6 (AD 24 px x 5 epochs of 11, AF 28 px x 4 of 10), seeds 1 and 2
    q=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=2 --aug progressive-resize)
    for seed in ${SEEDS:-1 2}; do
        row AD "$seed" "${q[@]}" --aug-param progressive-resize.size=24 --aug-param progressive-resize.epochs=5 --epochs 11
        row AF "$seed" "${q[@]}" --aug-param progressive-resize.size=28 --aug-param progressive-resize.epochs=4 --epochs 10
    done ;;
screen8)  # AH-AJ (round 7): one change each to row Q, seed 0: less translation, more smoothing, a higher Muon lr
    q=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=2)
    for seed in ${SEEDS:-0}; do
        row AH "$seed" "${q[@]}" --aug-param crop-flip.padding=1
        row AI "$seed" "${q[@]}" --label-smoothing 0.3
        row AJ "$seed" "${q[@]}" --opt-param muon_lr=0.2
    done ;;
confirm5)  # row AH (round 7's best seed 0: Q with a 1-pixel translation) with seeds 1 and 2, and row AK
           # (no translation at all: the alternating flip only) with seeds 0, 1 and 2
    q=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=2)
    for seed in ${SEEDS:-0 1 2}; do
        [ "$seed" = 0 ] || row AH "$seed" "${q[@]}" --aug-param crop-flip.padding=1
        row AK "$seed" "${q[@]}" --aug-param crop-flip.padding=0
    done ;;
screen9)  # AL-AN (round 8): row AH (v5) with a stride-2 stem: the groups start at 16x16, so the MACs of
          # row AH's net buy twice its widths (four times the parameters); seed 0 (SEEDS="1 2" for more)
    h=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --model-param stem_stride=2 --model-param stem=24)
    for seed in ${SEEDS:-0}; do
        row AL "$seed" "${h[@]}" --model-param 'widths=[64,128,256]'              # 20.13M MACs: 27.2T at 50k
        row AM "$seed" "${h[@]}" --model-param 'widths=[48,96,192]' --epochs 16   # 12.02M MACs: 28.8T
        row AN "$seed" "${h[@]}" --model-param 'widths=[56,112,224]' --epochs 12  # 15.82M MACs: 28.5T
    done ;;
screen10)  # AO-AR (round 9): one change each to row AH (v5), seed 0 (SEEDS="1 2" for more): airbench94's
           # fixed BatchNorm scales, the SGD learning rate of the head and the norms halved and doubled,
           # decoupled weight decay on the Muon-trained filters (none until now)
    h=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1)
    for seed in ${SEEDS:-0}; do
        row AO "$seed" "${h[@]}" --model-param bn_weight=false
        row AP "$seed" "${h[@]}" --lr 0.2
        row AQ "$seed" "${h[@]}" --lr 0.8
        row AR "$seed" "${h[@]}" --opt-param muon_weight_decay=0.005
    done ;;
confirm6)  # rows AP (--lr 0.2) and AQ (--lr 0.8), round 9's two best seed-0 rows, with seeds 1 and 2
    h=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1)
    for seed in ${SEEDS:-1 2}; do
        row AP "$seed" "${h[@]}" --lr 0.2
        row AQ "$seed" "${h[@]}" --lr 0.8
    done ;;
screen11)  # AS-AT (round 10): one change each to row AP (v6), seed 0 (SEEDS="1 2" for more): no weight
           # EMA (the trained weights are evaluated), the one-cycle warm-up 15% of the steps instead of 30%
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2)
    for seed in ${SEEDS:-0}; do
        row AS "$seed" "${p[@]}" --ema 0
        row AT "$seed" "${p[@]}" --sched-param pct_start=0.15
    done ;;
screen12)  # AU-AV (round 10): row AP (v6) with SiLU, hiverge's activation, instead of airbench's GELU;
           # with airbench94's SGD momentum 0.85 (head and norms; Muon keeps its own), seed 0
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2)
    for seed in ${SEEDS:-0}; do
        row AU "$seed" "${p[@]}" --model-param act=silu
        row AV "$seed" "${p[@]}" --momentum 0.85
    done ;;
screen13)  # AW (round 11): row AP (v6) with airbench94-Muon's schedule: the learning rates fall linearly from
           # the peak at the first step to zero at the last (`linear`, no warm-up) instead of the one-cycle, seed 0
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2)
    for seed in ${SEEDS:-0}; do
        row AW "$seed" "${p[@]}" --sched linear
    done ;;
screen14)  # AX-AY (round 11): row AP (v6) with each Muon-trained filter rescaled to norm sqrt(out) before every
           # step (`muon_normalize`, airbench94-Muon's), so muon_lr is the effective rate; AP's filters end near
           # 18 x sqrt(out), where its muon_lr 0.15 moves them about 0.01 of their norm per step: 0.02 and 0.04, seed 0
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2 --opt-param muon_normalize=true)
    for seed in ${SEEDS:-0}; do
        row AX "$seed" "${p[@]}" --opt-param muon_lr=0.02
        row AY "$seed" "${p[@]}" --opt-param muon_lr=0.04
    done ;;
screen15)  # AZ-BA (round 11): AX (AP + normalised Muon filters, muon_lr 0.02: 87.98 against AP's 88.04 at seed 0;
           # 0.04 gave 86.20) at half the rate, 0.01; and at 0.02 with airbench94-Muon's schedule, the linear
           # decay to zero without warm-up (on AP's own filters, row AW, it lost 0.5), seed 0
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2 --opt-param muon_normalize=true)
    for seed in ${SEEDS:-0}; do
        row AZ "$seed" "${p[@]}" --opt-param muon_lr=0.01
        row BA "$seed" "${p[@]}" --opt-param muon_lr=0.02 --sched linear
    done ;;
confirm8)  # round 11: row BA (the best plain validation accuracy of the round at seed 0, 86.60 against AP's 86.24;
           # with multi-crop TTA 87.90 against 88.04), seeds 1 and 2; BB, BA at muon_lr 0.03, seed 0; then BA's seeds
           # and AX evaluated with the choice's TTA, multicrop18 with weight 0.75 (evaluation only)
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2 --opt-param muon_normalize=true)
    for seed in ${SEEDS:-1 2}; do
        row BA "$seed" "${p[@]}" --opt-param muon_lr=0.02 --sched linear
    done
    row BB 0 "${p[@]}" --opt-param muon_lr=0.03 --sched linear
    for seed in 0 1 2; do
        row BA "$seed" "${p[@]}" --opt-param muon_lr=0.02 --sched linear --tta multicrop18 --tta-param weight=0.75
    done
    row AX 0 "${p[@]}" --opt-param muon_lr=0.02 --tta multicrop18 --tta-param weight=0.75
    row BB 0 "${p[@]}" --opt-param muon_lr=0.03 --sched linear --tta multicrop18 --tta-param weight=0.75 ;;
confirm9)  # round 11: row BB (muon_lr 0.03: seed 0 tied with BA's on multi-crop validation, 87.88 against 87.90, and
           # the best plain validation accuracy of the track, 87.04), seeds 1 and 2; BC (the trend continued,
           # muon_lr 0.045), seed 0; each evaluated with multicrop18 (weight 0.75) as well
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2 --opt-param muon_normalize=true --sched linear)
    for seed in ${SEEDS:-1 2}; do
        row BB "$seed" "${p[@]}" --opt-param muon_lr=0.03
    done
    row BC 0 "${p[@]}" --opt-param muon_lr=0.045
    for seed in ${SEEDS:-1 2}; do
        row BB "$seed" "${p[@]}" --opt-param muon_lr=0.03 --tta multicrop18 --tta-param weight=0.75
    done
    row BC 0 "${p[@]}" --opt-param muon_lr=0.045 --tta multicrop18 --tta-param weight=0.75 ;;
screen16)  # BD-BF (round 12): one change each to row BA (v8) in what airbench94-Muon does otherwise, seed 0: no
           # weight EMA; Muon momentum 0.6 (Nesterov); batch 512 (half the steps) with muon_lr 0.03 (x1.5)
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2 --opt-param muon_normalize=true
       --opt-param muon_lr=0.02 --sched linear --tta multicrop18 --tta-param weight=0.75)
    for seed in ${SEEDS:-0}; do
        row BD "$seed" "${p[@]}" --ema 0
        row BE "$seed" "${p[@]}" --opt-param muon_momentum=0.6
        row BF "$seed" "${p[@]}" --batch-size 512 --opt-param muon_lr=0.03
    done ;;
confirm10)  # round 12: row BF (batch 512, muon_lr 0.03: 88.58 on validation at seed 0 against BA's 88.08; BD no
            # EMA 87.78, BE Muon momentum 0.6 86.40), seeds 1 and 2
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2 --opt-param muon_normalize=true
       --opt-param muon_lr=0.02 --sched linear --tta multicrop18 --tta-param weight=0.75)
    for seed in ${SEEDS:-1 2}; do
        row BF "$seed" "${p[@]}" --batch-size 512 --opt-param muon_lr=0.03
    done ;;
screen17)  # BG-BI (round 12): one change each to row BA (v8), seed 0 (BF, batch 512, tied BA on 3 seeds: 87.99 against
           # 88.01): muon_lr 0.025 (between BA's 0.02 and BB's 0.03); a linear warm-up over the first 0.3 epochs
           # (the normalised filters take full-size steps from the first); weight EMA 0.995 (no EMA, BD, lost 0.3)
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2 --opt-param muon_normalize=true
       --opt-param muon_lr=0.02 --sched linear --tta multicrop18 --tta-param weight=0.75)
    for seed in ${SEEDS:-0}; do
        row BG "$seed" "${p[@]}" --opt-param muon_lr=0.025
        row BH "$seed" "${p[@]}" --warmup 0.3
        row BI "$seed" "${p[@]}" --ema 0.995
    done ;;
screen18)  # BJ-BK (round 13): row BA (v8) with the SGD learning rate of the head and the norms (BatchNorm biases x64)
           # halved and x1.5: without a warm-up the linear decay starts them at the peak, seed 0
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2 --opt-param muon_normalize=true
       --opt-param muon_lr=0.02 --sched linear --tta multicrop18 --tta-param weight=0.75)
    for seed in ${SEEDS:-0}; do
        row BJ "$seed" "${p[@]}" --lr 0.1
        row BK "$seed" "${p[@]}" --lr 0.3
    done ;;
screen19)  # BL-BO (round 14): row BA (v8) with the classifier's SGD learning rate scaled (head_lr_scale; the
           # norms and BatchNorm biases keep theirs): airbench94-Muon gives its head 12.6x the BN biases' rate,
           # BA gives it 1/64; x4, x16, x64, seed 0 (a fourth row, x256, was stopped after x64 had failed to train)
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2 --opt-param muon_normalize=true
       --opt-param muon_lr=0.02 --sched linear --tta multicrop18 --tta-param weight=0.75)
    for seed in ${SEEDS:-0}; do
        row BL "$seed" "${p[@]}" --opt-param head_lr_scale=4
        row BM "$seed" "${p[@]}" --opt-param head_lr_scale=16
        row BO "$seed" "${p[@]}" --opt-param head_lr_scale=64
    done ;;
confirm11)  # round 14: BL (head_lr_scale 4, the best of BL-BO at seed 0) with seeds 1 and 2; then its neighbours
            # BQ (x2) and BR (x8) at seed 0
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2 --opt-param muon_normalize=true
       --opt-param muon_lr=0.02 --sched linear --tta multicrop18 --tta-param weight=0.75)
    for seed in ${SEEDS:-1 2}; do row BL "$seed" "${p[@]}" --opt-param head_lr_scale=4; done
    row BQ 0 "${p[@]}" --opt-param head_lr_scale=2
    row BR 0 "${p[@]}" --opt-param head_lr_scale=8 ;;
ttaweight2)  # row BA (v8), seeds 0-2, evaluated with multicrop18's translated views weighted 0.5 and 0.9 (BA
             # has 0.75, chosen on row AP's models): evaluation only, nothing trains again
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2 --opt-param muon_normalize=true
       --opt-param muon_lr=0.02 --sched linear --tta multicrop18)
    for seed in 0 1 2; do
        for weight in 0.5 0.9; do
            row BA "$seed" "${p[@]}" --tta-param weight=$weight
        done
    done ;;
confirm12)  # round 14: BQ (head_lr_scale 2; BL's three seeds, 87.93, fell below BA's 88.01) with seeds 1 and 2
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2 --opt-param muon_normalize=true
       --opt-param muon_lr=0.02 --sched linear --tta multicrop18 --tta-param weight=0.75)
    for seed in ${SEEDS:-1 2}; do row BQ "$seed" "${p[@]}" --opt-param head_lr_scale=2; done ;;
ttareduce)  # row BA (v8), seeds 0-2, evaluated with multicrop18 (weight 0.75) averaging the views' probabilities
            # instead of their logits (reduce=probs): evaluation only, nothing trains again
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2 --opt-param muon_normalize=true
       --opt-param muon_lr=0.02 --sched linear --tta multicrop18 --tta-param weight=0.75)
    for seed in 0 1 2; do row BA "$seed" "${p[@]}" --tta-param reduce=probs; done ;;
round15)  # BS-BU (round 15): one change each to row BA (v8), three seeds each from the start (seed 0 alone
          # misled round 14: its x2 and x4 rows led BA at seeds 0 and 1 and fell 0.5-0.7 behind at seed 2):
          # BS the classifier's weight decay x10 (airbench94-Muon decays its head about ten times as much),
          # BT Muon momentum 0.9 (BE's 0.6 lost 1.7 points), BU the 2-pixel crop of airbench (round 7 chose 1)
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2 --opt-param muon_normalize=true
       --opt-param muon_lr=0.02 --sched linear --tta multicrop18 --tta-param weight=0.75)
    for seed in ${SEEDS:-0 1 2}; do  # seeds outermost: an interrupted round has every row at n seeds first
        row BS "$seed" "${p[@]}" --wd 5e-3
        row BT "$seed" "${p[@]}" --opt-param muon_momentum=0.9
        row BU "$seed" "${p[@]}" --aug-param crop-flip.padding=2
    done ;;
round16)  # BV-BW (round 16): one change each to row BU (v9), three seeds each: BV Muon with 3 Newton-Schulz
          # steps (airbench94-Muon's; torch's default is 5), BW round 5's narrow net AB (widths 24/48/96, 13.03M
          # MACs) for 15 epochs (29.3T at 50k): under the SGD-era optimizer its seed 0 led and its 3 seeds tied.
          # Stopped after seed 0 (BV 0.84 and BW 0.50 behind BU's seed 0 on validation): seeds 1-2 not run
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2 --opt-param muon_normalize=true
       --opt-param muon_lr=0.02 --sched linear --tta multicrop18 --tta-param weight=0.75
       --aug-param crop-flip.padding=2)
    for seed in ${SEEDS:-0 1 2}; do
        row BV "$seed" "${p[@]}" --opt-param ns_steps=3
        row BW "$seed" "${p[@]}" --model-param 'widths=[24,48,96]' --epochs 15
    done ;;
round16b)  # BX (round 16): row BU (v9) with batch 128, seed 0 first (SEEDS=0): twice the optimizer steps at the same
           # compute (batch 256 beat 512 in rounds 1-2 and 12; 128 was last tried in round 2, under the SGD-era optimizer)
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2 --opt-param muon_normalize=true
       --opt-param muon_lr=0.02 --sched linear --tta multicrop18 --tta-param weight=0.75
       --aug-param crop-flip.padding=2)
    for seed in ${SEEDS:-0}; do
        row BX "$seed" "${p[@]}" --batch-size 128
    done ;;
round17)  # BY-BZ (round 17): row BU (v9) with a wider network for fewer epochs, the direction round 16's BW did not
          # take, seed 0 first (SEEDS="1 2" for more): BY widths 36/72/144 (26.41M MACs) for 7 epochs (27.7T at 50k),
          # BZ 40/80/160 (31.90M MACs) for 6 (28.7T at 50k; round 1's row F, under the earlier optimizer)
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2 --opt-param muon_normalize=true
       --opt-param muon_lr=0.02 --sched linear --tta multicrop18 --tta-param weight=0.75
       --aug-param crop-flip.padding=2)
    for seed in ${SEEDS:-0}; do
        row BY "$seed" "${p[@]}" --model-param 'widths=[36,72,144]' --epochs 7
        row BZ "$seed" "${p[@]}" --model-param 'widths=[40,80,160]' --epochs 6
    done ;;
round17b)  # CA-CB (round 17): row BU (v9) with label smoothing 0.1 and 0.3 (0.2 since speedrun-cpu; both lost
           # under the earlier optimizer, rows X and AI), seed 0 first (SEEDS="1 2" for more). CB's seed 0 was
           # stopped in its first epoch (partial folder deleted) to give CA's confirmation the session's time
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2 --opt-param muon_normalize=true
       --opt-param muon_lr=0.02 --sched linear --tta multicrop18 --tta-param weight=0.75
       --aug-param crop-flip.padding=2)
    for seed in ${SEEDS:-0}; do
        row CA "$seed" "${p[@]}" --label-smoothing 0.1
        row CB "$seed" "${p[@]}" --label-smoothing 0.3
    done ;;
confirm13)  # row CA (BU with label smoothing 0.1: 88.60 against BU's 88.36 at seed 0), seeds 1 and 2
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2 --opt-param muon_normalize=true
       --opt-param muon_lr=0.02 --sched linear --tta multicrop18 --tta-param weight=0.75
       --aug-param crop-flip.padding=2)
    for seed in ${SEEDS:-1 2}; do
        row CA "$seed" "${p[@]}" --label-smoothing 0.1
    done ;;
moreseeds)  # the tenth final row (speedrun-cpu-v9) with five more seeds, 5-9, trained after its protocol's five
            # (0-4, in runs/) were reported, into more-seeds/ (out of the leaderboards): how far is its 88.00 from
            # the recipe's mean? Test accuracy only; nothing is chosen on them
    for seed in ${SEEDS:-5 6 7 8 9}; do
        echo "== more seeds: speedrun-cpu-v9 seed $seed"
        cifarbudget run --recipe speedrun-cpu-v9 --data-dir "$DATA" --results-dir results/cpu-track/more-seeds \
            --compute-budget 30T --quiet --seed "$seed" || echo "seed $seed exited $?"
    done ;;
reproduce)  # the tenth final row's seed 0 (recorded in runs/ at 20942c0 on an earlier VM), trained again from
            # the recipe name alone into reproduce/: the same run id; how close do a rerun's numbers come?
    cifarbudget run --recipe speedrun-cpu-v9 --data-dir "$DATA" --results-dir results/cpu-track/reproduce \
        --compute-budget 30T --quiet --seed "${SEEDS:-0}" ;;
confirm7)  # rows AV (SGD momentum 0.85) and AS (no EMA), round 10's two best seed-0 rows, with seeds 1 and 2,
           # then all three seeds evaluated with multicrop18 as well (evaluation only), as AP's row is
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2)
    for seed in ${SEEDS:-1 2}; do
        row AV "$seed" "${p[@]}" --momentum 0.85
        row AS "$seed" "${p[@]}" --ema 0
    done
    for seed in 0 1 2; do
        row AV "$seed" "${p[@]}" --momentum 0.85 --tta multicrop18
        row AS "$seed" "${p[@]}" --ema 0 --tta multicrop18
    done ;;
ttaweight)  # TTA is evaluation only, so its parameters can be chosen on validation too: row AP (v6) with
            # multicrop18's translated views given a total weight of 0.25 and 0.75 (the default 0.5), seeds 0-2
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2 --tta multicrop18)
    for seed in 0 1 2; do
        for weight in 0.25 0.75; do
            row AP "$seed" "${p[@]}" --tta-param weight=$weight
        done
    done ;;
tta18)  # the two validation-best 3-seed rows, AH and AP, evaluated with multicrop18 (flips x all eight
        # one-pixel translations) besides multicrop: TTA is evaluation only, so nothing trains again
    h=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1)
    for seed in 0 1 2; do
        row AH "$seed" "${h[@]}" --tta multicrop18
        row AP "$seed" "${h[@]}" --lr 0.2 --tta multicrop18
    done ;;
gap)  # how far 88% is in compute: row N trained longer than the budget allows (34.6T, 43.2T on 44,800 images),
      # seed 0, validation only; written to over-budget/, never to runs/ (the track's rows are <= 30T)
    n=("${val[@]}" "${row_n[@]}")
    for epochs in 12 15; do
        echo "== over budget: row N, $epochs epochs, seed 0"
        cifarbudget run --recipe speedrun-cpu --data-dir "$DATA" --results-dir results/cpu-track/over-budget \
            --quiet --seed 0 "${n[@]}" --epochs "$epochs" || echo "row N $epochs epochs exited $?"
    done ;;
gap2)  # the same question for row AP, the choice after round 9: 12 and 15 epochs (34.6T, 43.2T on 44,800
       # images), seed 0, validation only, into over-budget/ (never runs/)
    p=("${val[@]}" "${row_n[@]}" --aug-param crop-flip.padding=1 --lr 0.2)
    for epochs in 12 15; do
        echo "== over budget: row AP, $epochs epochs, seed 0"
        cifarbudget run --recipe speedrun-cpu --data-dir "$DATA" --results-dir results/cpu-track/over-budget \
            --quiet --seed 0 "${p[@]}" --epochs "$epochs" || echo "row AP $epochs epochs exited $?"
    done ;;
resnet20)  # E: resnet20 (40.55M MACs) with the recipe's training, 4 epochs: 21.7T at 45k, 24.2T at 50k
    for seed in 0 1 2; do row E "$seed" "${val[@]}" resnet20 --epochs 4; done ;;
final)
    shift; for seed in 0 1 2 3 4; do row final "$seed" --val-size 0 "$@"; done ;;
*) echo "usage: $0 ladder|screen|screen2|screen3|confirm|screen4|screen5|screen6|confirm2|confirm3|screen7|confirm4|screen8|confirm5|screen9|screen10|confirm6|screen11|screen12|screen13|screen14|screen15|confirm8|confirm9|screen16|confirm10|screen17|screen18|screen19|confirm11|confirm12|ttareduce|round15|round16|round16b|round17|round17b|confirm13|reproduce|moreseeds|confirm7|ttaweight|ttaweight2|tta18|gap|gap2|resnet20|final [ARGS of the chosen row]" >&2; exit 2 ;;
esac

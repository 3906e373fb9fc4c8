#!/usr/bin/env bash
# Build the one-folder app with PyInstaller (build_installer.spec), check it, and say how big it is.
#
#   scripts/build_installer.sh            # dist/Model Workbench/ (macOS: also dist/Model Workbench.app)
#   WORKBENCH_BUNDLE_STARTER=0 scripts/build_installer.sh   # without the 94 MiB starter model
#   SELF_TEST_MODEL=path/to/model.gguf scripts/build_installer.sh   # self-test with that model
#
# Needs the project's .venv (scripts/setup.sh). PyInstaller is installed into it when missing (the
# "build" extra). The build goes to build/ and dist/ (both ignored by git). The frozen app's
# --self-test then opens the window offscreen, loads a model in the engine child process (started
# by the frozen app itself) and generates a few tokens; the script fails if that fails.
# About 50 s to build on 2 cores here.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if [ ! -x "$PY" ]; then
    echo "No .venv: run scripts/setup.sh first." >&2
    exit 1
fi
if ! "$PY" -c "import PyInstaller" >/dev/null 2>&1; then
    echo "Installing PyInstaller into .venv ..."
    "$PY" -m pip install --quiet "pyinstaller>=6"
fi

start=$(date +%s)
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN --distpath dist --workpath build build_installer.spec
echo "Built in $(( $(date +%s) - start )) s."

APP_DIR="dist/Model Workbench"
case "$(uname -s)" in
    Darwin) EXE="dist/Model Workbench.app/Contents/MacOS/model-workbench" ;;
    MINGW*|MSYS*|CYGWIN*) EXE="$APP_DIR/model-workbench.exe" ;;
    *) EXE="$APP_DIR/model-workbench" ;;
esac

echo "Self-test of the frozen app ($EXE):"
args=(--self-test)
if [ -n "${SELF_TEST_MODEL:-}" ]; then
    args+=(--model "$SELF_TEST_MODEL")
fi
QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}" "$EXE" "${args[@]}"

echo
echo "Bundle size: $(du -sh "$APP_DIR" | cut -f1)  ($APP_DIR)"
echo "Biggest parts:"
du -s "$APP_DIR"/_internal/* "$APP_DIR"/_internal/PySide6/Qt/* 2>/dev/null | sort -rn | head -n 10 |
    while read -r kib path; do printf '  %6s MiB  %s\n' "$(( kib / 1024 ))" "${path#"$APP_DIR"/}"; done

"""Model Workbench core: Qt-free. The GUI (widgets/, app/) and the CLI are its clients."""

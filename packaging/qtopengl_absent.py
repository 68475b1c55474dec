"""Stands in for PySide6.QtOpenGL in the frozen bundle (packaging/trim.py, MODULES_REPLACED).

pyqtgraph imports the module when its curve items are imported and reads its classes
only when it draws through OpenGL, which Bitlens never turns on. Should anything read
one, it gets an AttributeError that names what is missing, not a crash.
"""


def __getattr__(name: str) -> object:
    raise AttributeError(
        f"PySide6.QtOpenGL.{name}: Qt's OpenGL bindings are not in this Bitlens bundle "
        "(it draws its plots without OpenGL)"
    )

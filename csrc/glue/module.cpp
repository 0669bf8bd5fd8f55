// The Python module morph3d._C. Loading it runs the op registrations (glue/register.cpp, same
// shared library); the module itself only says whether the CUDA kernels were compiled in.
// Plain Python C API: no pybind11 or torch headers to compile.
#include <Python.h>

static PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_C", "morph3d C++/CUDA kernels; ops live under torch.ops.morph3d", -1, nullptr,
};

PyMODINIT_FUNC PyInit__C(void) {
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
#ifdef MORPH3D_WITH_CUDA
  PyObject* with_cuda = Py_True;
#else
  PyObject* with_cuda = Py_False;
#endif
  if (PyModule_AddObjectRef(module, "with_cuda", with_cuda) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}

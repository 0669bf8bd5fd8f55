"""``morph3d info MODEL [--json]``: summarise a morphable model."""
import json


def add_parser(sub):
    p = sub.add_parser("info", help="summarise a model ('open' or a model file)")
    p.add_argument("model", help="'open' (the embedded default) or a path to a model file in any supported format")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def run(args) -> int:
    from morph3d.model import load_model
    model = load_model(args.model)
    info = model.summary()
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{info['name']}  (format: {info['format']})")
    print(f"  vertices      {info['num_vertices']}")
    print(f"  triangles     {info['num_triangles']}")
    print(f"  identity      {info['identity_dim']} components")
    print(f"  expression    {info['expression_dim']} ({info['expression_kind']})")
    print(f"  albedo        {info['albedo_dim']} components")
    print(f"  landmarks     {info['landmarks']} of 68 iBUG points")
    print(f"  joints        {info['joints']}")
    print(f"  uv            {'yes' if info['has_uv'] else 'no'}")
    print(f"  regions       {', '.join(info['regions'])}")
    if info["expression_names"]:
        print(f"  expressions   {', '.join(info['expression_names'])}")
    return 0
